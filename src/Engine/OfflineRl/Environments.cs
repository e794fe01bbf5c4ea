using Engine.Core;
using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// A procedurally generated grid game in the spirit of Procgen: a level seed fixes the level (layout,
/// spawn schedule), actions are discrete, observations are a small egocentric grid of a few channels,
/// and an episode ends at a terminal event or after <see cref="MaxSteps"/> steps. Everything that happens
/// is a function of the level seed and the action sequence (no other randomness), so an episode can be
/// replayed bit for bit, and a planner can look ahead on a <see cref="Clone"/>.
/// </summary>
internal abstract class GridEnvironment
{
    /// <summary>The environment's name on the command line (<c>bigfish</c>, <c>maze</c>).</summary>
    public abstract string Name { get; }

    /// <summary>Number of discrete actions.</summary>
    public abstract int ActionCount { get; }

    /// <summary>Observation channels.</summary>
    public abstract int Channels { get; }

    /// <summary>Side of the square egocentric window (odd; the agent sits in its centre).</summary>
    public abstract int View { get; }

    /// <summary>Floats per observation: channels x view x view.</summary>
    public int ObservationSize => Channels * View * View;

    /// <summary>Step limit of the current level.</summary>
    public int MaxSteps { get; protected set; }

    /// <summary>Steps taken in the current episode.</summary>
    public int StepsTaken { get; protected set; }

    /// <summary>True once the episode has ended (terminal event or step limit).</summary>
    public bool Done { get; protected set; }

    /// <summary>Starts the level that <paramref name="levelSeed"/> fixes.</summary>
    public abstract void Reset(ulong levelSeed);

    /// <summary>Writes the current observation, [channels, view, view] row-major.</summary>
    public abstract void Observe(Span<float> observation);

    /// <summary>Applies one action and returns its reward; sets <see cref="Done"/> when the episode ends.</summary>
    public float Step(int action)
    {
        if (Done)
        {
            throw new EngineException($"{Name}: step after the episode ended");
        }

        if ((uint)action >= (uint)ActionCount)
        {
            throw new EngineException($"{Name}: action {action} is outside [0, {ActionCount})");
        }

        float reward = StepCore(action);
        StepsTaken++;
        if (StepsTaken >= MaxSteps)
        {
            Done = true;
        }

        return reward;
    }

    /// <summary>The planner's (teacher's) action for the current state.</summary>
    public abstract int PlannerAction();

    /// <summary>An independent copy of the current state.</summary>
    public abstract GridEnvironment Clone();

    protected abstract float StepCore(int action);

    /// <summary>Writes <paramref name="value"/> at window cell (dx, dy) from the agent, if inside the window.</summary>
    protected void Put(Span<float> observation, int channel, int dx, int dy, float value)
    {
        int r = View / 2;
        if (Math.Abs(dx) <= r && Math.Abs(dy) <= r)
        {
            observation[(channel * View + dy + r) * View + dx + r] = value;
        }
    }

    /// <summary>A generator for one level: the seed is mixed so that neighbouring seeds give unrelated levels.</summary>
    protected static SplitMix64 LevelRandom(ulong levelSeed, ulong salt)
    {
        var mix = new SplitMix64(levelSeed ^ salt);
        return new SplitMix64(mix.NextUInt64());
    }
}

/// <summary>The built-in environments and the level sets.</summary>
internal static class OfflineEnvironments
{
    /// <summary>First level seed of the unseen (out-of-distribution) levels; training levels are 0, 1, 2, ...</summary>
    public const ulong UnseenLevelBase = 1_000_000;

    /// <summary>The environment names.</summary>
    public static IReadOnlyList<string> Names { get; } = ["bigfish", "maze"];

    /// <summary>A new environment by name (not yet reset).</summary>
    public static GridEnvironment Create(string name) => name switch
    {
        "bigfish" => new BigFishEnvironment(),
        "maze" => new MazeEnvironment(),
        _ => throw new EngineException($"unknown environment '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>Level seeds of the <paramref name="count"/> training levels: 0 .. count-1.</summary>
    public static ulong[] TrainingLevels(int count) => Levels(0, count);

    /// <summary>Level seeds of <paramref name="count"/> levels never used for training.</summary>
    public static ulong[] UnseenLevels(int count) => Levels(UnseenLevelBase, count);

    private static ulong[] Levels(ulong first, int count)
    {
        if (count <= 0 || count > 100_000)
        {
            throw new EngineException($"level count must be in [1, 100000], got {count}");
        }

        var levels = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            levels[i] = first + (ulong)i;
        }

        return levels;
    }
}
