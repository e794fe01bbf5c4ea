using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// A grid version of Procgen's maze: the level seed carves a maze of 4-7 x 4-7 cells (depth-first
/// backtracking, then a few extra openings so there are loops) and places the agent and the goal far
/// apart. Reaching the goal gives +10 and ends the episode; the step limit is twice the shortest
/// path plus 6. Actions: 0 up, 1 down, 2 left, 3 right (walking into a wall stays put).
/// </summary>
/// <remarks>
/// Observation: a 9 x 9 window around the agent, channel 0 walls (outside the maze counts as wall),
/// channel 1 the goal: at its place when inside the window, otherwise on the window's border in its
/// direction (a compass), so a policy that sees only the window still knows where to head.
/// </remarks>
internal sealed class MazeEnvironment : GridEnvironment
{
    private static readonly (int Dx, int Dy)[] Moves = [(0, -1), (0, 1), (-1, 0), (1, 0)];

    private int size, agentX, agentY, goalX, goalY;
    private bool[] wall = [];
    private int[] distanceToGoal = [];

    public override string Name => "maze";

    public override int ActionCount => 4;

    public override int Channels => 2;

    public override int View => 9;

    public override void Reset(ulong levelSeed)
    {
        SplitMix64 random = LevelRandom(levelSeed, 0x3A2E5u);
        int cells = 4 + random.NextInt(4);
        size = 2 * cells + 1;
        wall = new bool[size * size];
        Array.Fill(wall, true);
        Carve(ref random, cells);
        // Extra openings: a wall between two horizontally or vertically adjacent cells.
        for (int i = 0; i < cells; i++)
        {
            int x = 1 + random.NextInt(size - 2), y = 1 + random.NextInt(size - 2);
            if ((x % 2 == 0) != (y % 2 == 0))
            {
                wall[y * size + x] = false;
            }
        }

        int startCell = random.NextInt(cells * cells);
        agentX = 2 * (startCell % cells) + 1;
        agentY = 2 * (startCell / cells) + 1;
        int[] fromStart = Distances(agentX, agentY);
        int far = fromStart.Where(d => d < int.MaxValue).Max();
        // The goal: a cell at least two thirds of the farthest distance away, chosen by the level.
        var candidates = new List<int>();
        for (int y = 1; y < size; y += 2)
        {
            for (int x = 1; x < size; x += 2)
            {
                if (fromStart[y * size + x] >= 2 * far / 3 && fromStart[y * size + x] > 0)
                {
                    candidates.Add(y * size + x);
                }
            }
        }

        int goal = candidates[random.NextInt(candidates.Count)];
        goalX = goal % size;
        goalY = goal / size;
        distanceToGoal = Distances(goalX, goalY);
        MaxSteps = 2 * distanceToGoal[agentY * size + agentX] + 6;
        StepsTaken = 0;
        Done = false;
    }

    public override void Observe(Span<float> observation)
    {
        observation.Clear();
        int r = View / 2;
        for (int dy = -r; dy <= r; dy++)
        {
            for (int dx = -r; dx <= r; dx++)
            {
                if (IsWall(agentX + dx, agentY + dy))
                {
                    Put(observation, 0, dx, dy, 1f);
                }
            }
        }

        Put(observation, 1, Math.Clamp(goalX - agentX, -r, r), Math.Clamp(goalY - agentY, -r, r), 1f);
    }

    protected override float StepCore(int action)
    {
        var (dx, dy) = Moves[action];
        if (!IsWall(agentX + dx, agentY + dy))
        {
            agentX += dx;
            agentY += dy;
        }

        if (agentX == goalX && agentY == goalY)
        {
            Done = true;
            return 10f;
        }

        return 0f;
    }

    public override int PlannerAction()
    {
        // Shortest path: the first move that lowers the distance to the goal (lowest action on ties).
        int here = distanceToGoal[agentY * size + agentX];
        for (int a = 0; a < Moves.Length; a++)
        {
            int x = agentX + Moves[a].Dx, y = agentY + Moves[a].Dy;
            if (!IsWall(x, y) && distanceToGoal[y * size + x] < here)
            {
                return a;
            }
        }

        return 0;
    }

    public override GridEnvironment Clone() => (MazeEnvironment)MemberwiseClone();   // the arrays are never written after Reset

    private bool IsWall(int x, int y) => x < 0 || y < 0 || x >= size || y >= size || wall[y * size + x];

    private void Carve(ref SplitMix64 random, int cells)
    {
        var visited = new bool[cells * cells];
        var stack = new Stack<int>();
        stack.Push(0);
        visited[0] = true;
        wall[size + 1] = false;
        Span<int> options = stackalloc int[4];
        while (stack.Count > 0)
        {
            int cell = stack.Peek();
            int cx = cell % cells, cy = cell / cells, count = 0;
            for (int a = 0; a < 4; a++)
            {
                int nx = cx + Moves[a].Dx, ny = cy + Moves[a].Dy;
                if (nx >= 0 && ny >= 0 && nx < cells && ny < cells && !visited[ny * cells + nx])
                {
                    options[count++] = a;
                }
            }

            if (count == 0)
            {
                stack.Pop();
                continue;
            }

            var (dx, dy) = Moves[options[random.NextInt(count)]];
            int next = (cy + dy) * cells + cx + dx;
            visited[next] = true;
            wall[(2 * cy + 1 + dy) * size + 2 * cx + 1 + dx] = false;
            wall[(2 * (cy + dy) + 1) * size + 2 * (cx + dx) + 1] = false;
            stack.Push(next);
        }
    }

    private int[] Distances(int fromX, int fromY)
    {
        var distance = new int[size * size];
        Array.Fill(distance, int.MaxValue);
        var queue = new Queue<int>();
        distance[fromY * size + fromX] = 0;
        queue.Enqueue(fromY * size + fromX);
        while (queue.Count > 0)
        {
            int at = queue.Dequeue();
            int x = at % size, y = at / size;
            foreach (var (dx, dy) in Moves)
            {
                int nx = x + dx, ny = y + dy;
                if (!IsWall(nx, ny) && distance[ny * size + nx] == int.MaxValue)
                {
                    distance[ny * size + nx] = distance[at] + 1;
                    queue.Enqueue(ny * size + nx);
                }
            }
        }

        return distance;
    }
}
