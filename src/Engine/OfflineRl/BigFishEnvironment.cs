using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// A grid version of Procgen's bigfish: the agent swims in a W x H tank (W 10-14, H 8-10 per level) while
/// fish cross it horizontally from either side. Touching a smaller fish eats it (+1); every second fish
/// eaten grows the agent by one; reaching size 6 wins (+10, episode ends). Touching a fish of the agent's
/// size or larger ends the episode. Actions: 0 stay, 1 up, 2 down, 3 left, 4 right.
/// </summary>
/// <remarks>
/// The level seed fixes the tank, the spawn probability and the spawn schedule (one draw sequence consumed
/// every step whatever the agent does; the new fish's size is drawn relative to the agent's size at that
/// moment). Observation: an 11 x 11 window around the agent with channels 0 outside the tank, 1 edible fish,
/// 2 dangerous fish, 3 the fish's velocity (+1 right / -1 left, halved for fish that move every other step).
/// </remarks>
internal sealed class BigFishEnvironment : GridEnvironment
{
    private const int StartSize = 2;
    private const int WinSize = 6;
    private const int FishPerGrowth = 2;

    private int width, height, agentX, agentY, agentSize, eaten;
    private double spawnProbability;
    private SplitMix64 random;
    private List<Fish> fish = [];

    public override string Name => "bigfish";

    public override int ActionCount => 5;

    public override int Channels => 4;

    public override int View => 11;

    public override void Reset(ulong levelSeed)
    {
        random = LevelRandom(levelSeed, 0xB16F15Bu);
        width = 10 + random.NextInt(5);
        height = 8 + random.NextInt(3);
        spawnProbability = 0.25 + 0.2 * random.NextDouble();
        agentX = width / 2;
        agentY = height / 2;
        agentSize = StartSize;
        eaten = 0;
        fish = [];
        MaxSteps = 150;
        StepsTaken = 0;
        Done = false;
        // A few fish already in the tank, so the first steps are not empty.
        for (int i = 0; i < 3; i++)
        {
            Spawn(random.NextInt(width));
        }
    }

    public override void Observe(Span<float> observation)
    {
        observation.Clear();
        int r = View / 2;
        for (int dy = -r; dy <= r; dy++)
        {
            for (int dx = -r; dx <= r; dx++)
            {
                int x = agentX + dx, y = agentY + dy;
                if (x < 0 || y < 0 || x >= width || y >= height)
                {
                    Put(observation, 0, dx, dy, 1f);
                }
            }
        }

        foreach (Fish f in fish)
        {
            int dx = f.X - agentX, dy = f.Y - agentY;
            Put(observation, f.Size < agentSize ? 1 : 2, dx, dy, 1f);
            Put(observation, 3, dx, dy, f.Direction * (f.Period == 1 ? 1f : 0.5f));
        }
    }

    protected override float StepCore(int action)
    {
        switch (action)
        {
            case 1: agentY = Math.Max(0, agentY - 1); break;
            case 2: agentY = Math.Min(height - 1, agentY + 1); break;
            case 3: agentX = Math.Max(0, agentX - 1); break;
            case 4: agentX = Math.Min(width - 1, agentX + 1); break;
        }

        float reward = Collide();
        if (Done)
        {
            return reward;
        }

        int t = StepsTaken;
        var moved = new List<Fish>(fish.Count);
        foreach (Fish f in fish)
        {
            int x = (t + f.Phase) % f.Period == 0 ? f.X + f.Direction : f.X;
            if (x >= 0 && x < width)
            {
                moved.Add(f with { X = x });
            }
        }

        fish = moved;
        reward += Collide();
        if (Done)
        {
            return reward;
        }

        // The spawn draws are taken every step, whatever happened, so the schedule is the level's.
        double roll = random.NextDouble();
        int side = random.NextInt(2);
        int row = random.NextInt(height);
        ulong sizeBits = random.NextUInt64();
        ulong periodBits = random.NextUInt64();
        if (roll < spawnProbability)
        {
            AddFish(side == 0 ? 0 : width - 1, row, side == 0 ? 1 : -1, sizeBits, periodBits);
        }

        return reward;
    }

    public override int PlannerAction()
    {
        // Depth-2 exhaustive look-ahead on clones: reward, a large penalty for dying, and a pull towards the
        // nearest edible fish at the end. Ties go to the lowest action, so the planner is deterministic.
        int best = 0;
        double bestScore = double.NegativeInfinity;
        for (int a = 0; a < ActionCount; a++)
        {
            var first = (BigFishEnvironment)Clone();
            double score = first.Step(a);
            if (first.Done)
            {
                score += first.agentSize >= WinSize ? 0 : -100;
            }
            else
            {
                double bestSecond = double.NegativeInfinity;
                for (int b = 0; b < ActionCount; b++)
                {
                    var second = (BigFishEnvironment)first.Clone();
                    double s = second.Step(b);
                    if (second.Done)
                    {
                        s += second.agentSize >= WinSize ? 0 : -50;
                    }
                    else
                    {
                        s -= 0.05 * second.NearestEdibleDistance() + 0.3 * second.DangerNearby();
                    }

                    bestSecond = Math.Max(bestSecond, s);
                }

                score += 0.95 * bestSecond;
            }

            if (score > bestScore + 1e-9)
            {
                bestScore = score;
                best = a;
            }
        }

        return best;
    }

    public override GridEnvironment Clone()
    {
        var copy = (BigFishEnvironment)MemberwiseClone();
        copy.fish = [.. fish];
        return copy;
    }

    private void Spawn(int x)
    {
        int row = random.NextInt(height);
        int dir = random.NextInt(2) == 0 ? 1 : -1;
        AddFish(x, row, dir, random.NextUInt64(), random.NextUInt64());
    }

    private void AddFish(int x, int y, int direction, ulong sizeBits, ulong periodBits)
    {
        if ((x == agentX && y == agentY) || fish.Exists(f => f.X == x && f.Y == y))
        {
            return;
        }

        // Half edible (size below the agent's), half dangerous (the agent's size or one more).
        int size = (sizeBits % 10) < 5 ? 1 + (int)((sizeBits >> 8) % (ulong)(agentSize - 1)) : agentSize + (int)((sizeBits >> 8) % 2);
        int period = (periodBits % 3) == 0 ? 2 : 1;
        fish.Add(new Fish(x, y, size, direction, period, (int)((periodBits >> 8) % 2)));
    }

    private float Collide()
    {
        float reward = 0;
        for (int i = fish.Count - 1; i >= 0; i--)
        {
            Fish f = fish[i];
            if (f.X != agentX || f.Y != agentY)
            {
                continue;
            }

            if (f.Size >= agentSize)
            {
                Done = true;
                return reward;
            }

            fish.RemoveAt(i);
            reward += 1;
            if (++eaten % FishPerGrowth == 0)
            {
                agentSize++;
                if (agentSize >= WinSize)
                {
                    Done = true;
                    return reward + 10;
                }
            }
        }

        return reward;
    }

    private int NearestEdibleDistance()
    {
        int best = width + height;
        foreach (Fish f in fish)
        {
            if (f.Size < agentSize)
            {
                best = Math.Min(best, Math.Abs(f.X - agentX) + Math.Abs(f.Y - agentY));
            }
        }

        return best;
    }

    private int DangerNearby()
    {
        int count = 0;
        foreach (Fish f in fish)
        {
            if (f.Size >= agentSize && Math.Abs(f.X - agentX) + Math.Abs(f.Y - agentY) <= 2)
            {
                count++;
            }
        }

        return count;
    }

    private readonly record struct Fish(int X, int Y, int Size, int Direction, int Period, int Phase);
}
