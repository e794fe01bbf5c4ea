using System.Globalization;
using Engine.Core;
using Engine.IO;

namespace Engine.OfflineRl;

/// <summary>
/// An offline RL dataset: N steps of E whole episodes, stored in one safetensors file that users can
/// write themselves. Tensors (row i is one step; the episodes are contiguous and numbered 0..E-1 in order):
/// <list type="bullet">
/// <item><c>observations</c> F32 [N, C, H, W] (or [N, D]): what the agent saw before acting, finite;</item>
/// <item><c>actions</c> I32 or I64 [N]: the action taken, in [0, action_count);</item>
/// <item><c>rewards</c> F32 [N]: the reward that action earned, finite;</item>
/// <item><c>episode_ids</c> I32 or I64 [N]: the step's episode, non-decreasing from 0 by steps of 0 or 1;</item>
/// <item><c>episode_returns</c> F32 [E]: each episode's summed reward (checked against <c>rewards</c>).</item>
/// </list>
/// Metadata: <c>action_count</c> (required, decimal) and optionally <c>environment</c> (a built-in name,
/// then the observation size must match it). Loading checks all of this and fails with one line naming the
/// first problem.
/// </summary>
internal sealed class OfflineDataset
{
    /// <summary>A dataset from arrays (validated as a loaded file is).</summary>
    public OfflineDataset(string environment, int actionCount, int[] observationShape, float[] observations, int[] actions,
        float[] rewards, int[] episodeIds, float[] episodeReturns)
        : this(environment, actionCount, observationShape, observations, actions, rewards, episodeIds, episodeReturns, "dataset")
    {
    }

    /// <summary>The environment the data came from ("" when unknown).</summary>
    public string Environment { get; }

    /// <summary>Number of discrete actions.</summary>
    public int ActionCount { get; }

    /// <summary>Shape of one observation (e.g. [C, H, W]).</summary>
    public int[] ObservationShape { get; }

    /// <summary>Floats per observation.</summary>
    public int ObservationSize => ObservationShape.Aggregate(1, (a, b) => a * b);

    /// <summary>Steps N.</summary>
    public int Count => Actions.Length;

    /// <summary>Episodes E.</summary>
    public int EpisodeCount => EpisodeReturns.Length;

    /// <summary>[N, ObservationSize] observations.</summary>
    public float[] Observations { get; }

    /// <summary>[N] actions.</summary>
    public int[] Actions { get; }

    /// <summary>[N] rewards.</summary>
    public float[] Rewards { get; }

    /// <summary>[N] episode of each step.</summary>
    public int[] EpisodeIds { get; }

    /// <summary>[E] return of each episode.</summary>
    public float[] EpisodeReturns { get; }

    /// <summary>Row <paramref name="i"/>'s observation.</summary>
    public ReadOnlySpan<float> Observation(int i) => Observations.AsSpan(i * ObservationSize, ObservationSize);

    /// <summary>Rows whose action is <paramref name="action"/>, in order.</summary>
    public int[] RowsOfAction(int action) => Enumerable.Range(0, Count).Where(i => Actions[i] == action).ToArray();

    /// <summary>The rows of the top <paramref name="fraction"/> of episodes by return (at least one episode; ties by episode id).</summary>
    public int[] TopEpisodeRows(double fraction)
    {
        if (!(fraction > 0 && fraction <= 1))
        {
            throw new EngineException($"the percentile fraction must be in (0, 1], got {fraction}");
        }

        int keep = Math.Max(1, (int)Math.Round(fraction * EpisodeCount));
        var kept = new HashSet<int>(Enumerable.Range(0, EpisodeCount).OrderByDescending(e => EpisodeReturns[e]).ThenBy(e => e).Take(keep));
        return Enumerable.Range(0, Count).Where(i => kept.Contains(EpisodeIds[i])).ToArray();
    }

    /// <summary>Writes the dataset (atomically).</summary>
    public void Save(string path)
    {
        var metadata = new Dictionary<string, string>
        {
            ["action_count"] = ActionCount.ToString(CultureInfo.InvariantCulture),
            ["environment"] = Environment,
        };
        var writer = new SafeTensorsWriter(metadata);
        writer.Add("observations", [Count, .. ObservationShape], Observations);
        writer.AddInt32("actions", [Count], Actions);
        writer.Add("rewards", [Count], Rewards);
        writer.AddInt32("episode_ids", [Count], EpisodeIds);
        writer.Add("episode_returns", [EpisodeCount], EpisodeReturns);
        writer.Write(path);
    }

    /// <summary>Reads and validates a dataset file; any problem is one <see cref="EngineException"/> line naming the file.</summary>
    public static OfflineDataset Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new EngineException($"dataset '{path}' does not exist");
        }

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        string where = $"dataset '{path}'";
        foreach (string name in (string[])["observations", "actions", "rewards", "episode_ids", "episode_returns"])
        {
            if (!file.Contains(name))
            {
                throw new EngineException($"{where}: tensor '{name}' is missing");
            }
        }

        if (!file.Metadata.TryGetValue("action_count", out string? countText) ||
            !int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out int actionCount) || actionCount < 2 || actionCount > 4096)
        {
            throw new EngineException($"{where}: metadata 'action_count' must be an integer in [2, 4096]");
        }

        SafeTensorInfo obs = file.GetInfo("observations");
        if (obs.Shape.Count < 2 || obs.Shape.Any(d => d <= 0))
        {
            throw new EngineException($"{where}: 'observations' must be [N, ...] with N and every other dimension positive, got {obs.ShapeText}");
        }

        int n = obs.Shape[0];
        CheckShape(file, where, "actions", n);
        CheckShape(file, where, "rewards", n);
        CheckShape(file, where, "episode_ids", n);
        SafeTensorInfo returnsInfo = file.GetInfo("episode_returns");
        if (returnsInfo.Shape.Count != 1 || returnsInfo.Shape[0] <= 0)
        {
            throw new EngineException($"{where}: 'episode_returns' must be [E] with E positive, got {returnsInfo.ShapeText}");
        }

        string environment = file.Metadata.GetValueOrDefault("environment") ?? "";
        var dataset = new OfflineDataset(environment, actionCount, obs.Shape.Skip(1).ToArray(), file.ReadAsFloat32("observations"),
            file.ReadAsInt32("actions"), file.ReadAsFloat32("rewards"), file.ReadAsInt32("episode_ids"), file.ReadAsFloat32("episode_returns"),
            where);
        return dataset;
    }

    private OfflineDataset(string environment, int actionCount, int[] observationShape, float[] observations, int[] actions,
        float[] rewards, int[] episodeIds, float[] episodeReturns, string where)
    {
        Environment = environment;
        ActionCount = actionCount;
        ObservationShape = observationShape;
        Observations = observations;
        Actions = actions;
        Rewards = rewards;
        EpisodeIds = episodeIds;
        EpisodeReturns = episodeReturns;
        Validate(where);
    }

    private static void CheckShape(SafeTensorsFile file, string where, string name, int n)
    {
        SafeTensorInfo info = file.GetInfo(name);
        if (info.Shape.Count != 1 || info.Shape[0] != n)
        {
            throw new EngineException($"{where}: '{name}' must be [{n}] (one per observation), got {info.ShapeText}");
        }
    }

    private void Validate(string where)
    {
        int n = Actions.Length;
        if (n == 0 || Observations.Length != (long)n * ObservationSize || Rewards.Length != n || EpisodeIds.Length != n)
        {
            throw new EngineException($"{where}: observations, actions, rewards and episode ids must all have the same positive number of rows");
        }

        if (Environment.Length > 0)
        {
            if (!OfflineEnvironments.Names.Contains(Environment))
            {
                throw new EngineException($"{where}: unknown environment '{Environment}' (known: {string.Join(", ", OfflineEnvironments.Names)})");
            }

            GridEnvironment env = OfflineEnvironments.Create(Environment);
            if (env.ObservationSize != ObservationSize || env.ActionCount != ActionCount)
            {
                throw new EngineException(
                    $"{where}: environment '{Environment}' has observations of {env.ObservationSize} floats and {env.ActionCount} actions, " +
                    $"the data has {ObservationSize} and {ActionCount}");
            }
        }

        for (long i = 0; i < Observations.Length; i++)
        {
            if (!float.IsFinite(Observations[i]))
            {
                throw new EngineException($"{where}: observation row {i / ObservationSize} holds a non-finite value");
            }
        }

        var sums = new double[EpisodeReturns.Length];
        for (int i = 0; i < n; i++)
        {
            if ((uint)Actions[i] >= (uint)ActionCount)
            {
                throw new EngineException($"{where}: action {Actions[i]} at row {i} is outside [0, {ActionCount})");
            }

            if (!float.IsFinite(Rewards[i]))
            {
                throw new EngineException($"{where}: reward at row {i} is not finite");
            }

            int previous = i == 0 ? 0 : EpisodeIds[i - 1];
            if (EpisodeIds[i] != previous && EpisodeIds[i] != previous + 1)
            {
                throw new EngineException(
                    $"{where}: episode ids must start at 0 and rise by 0 or 1 per row (episodes contiguous), row {i} has {EpisodeIds[i]} after {previous}");
            }

            if (EpisodeIds[i] >= EpisodeReturns.Length)
            {
                throw new EngineException($"{where}: episode id {EpisodeIds[i]} at row {i} has no entry in 'episode_returns' ({EpisodeReturns.Length} episodes)");
            }

            sums[EpisodeIds[i]] += Rewards[i];
        }

        if (EpisodeIds[n - 1] != EpisodeReturns.Length - 1)
        {
            throw new EngineException($"{where}: 'episode_returns' has {EpisodeReturns.Length} entries but the rows hold {EpisodeIds[n - 1] + 1} episodes");
        }

        for (int e = 0; e < sums.Length; e++)
        {
            if (!float.IsFinite(EpisodeReturns[e]) || Math.Abs(sums[e] - EpisodeReturns[e]) > 1e-3 * Math.Max(1, Math.Abs(sums[e])))
            {
                throw new EngineException($"{where}: episode {e}'s return {EpisodeReturns[e]} is not the sum of its rewards ({sums[e]:G6})");
            }
        }
    }
}
