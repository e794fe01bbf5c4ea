using System.Globalization;
using Engine.Core;
using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// How a policy picks its actions when evaluated: greedily (argmax of the logits, temperature 0) or sampled from
/// <c>softmax(logits / T)</c> with randomness keyed by (seed, level seed, step), so an episode's actions do not depend
/// on which other levels run beside it. A greedy BC policy on a partially observed grid repeats itself wherever two
/// places look alike (maze: it loops until the step limit); sampling is how a stochastic policy is meant to act.
/// </summary>
/// <param name="Temperature">0 for greedy, else the softmax temperature.</param>
/// <param name="Seed">The sampling seed.</param>
internal readonly record struct ActionSelection(float Temperature, ulong Seed)
{
    /// <summary>Argmax actions.</summary>
    public static ActionSelection Greedy => new(0, 0);

    /// <summary>True when actions are sampled.</summary>
    public bool Sampled => Temperature > 0;

    /// <summary>Checks the temperature (0 or a positive finite number).</summary>
    public static ActionSelection Create(float temperature, ulong seed) => temperature >= 0 && float.IsFinite(temperature)
        ? new ActionSelection(temperature, seed)
        : throw new EngineException($"the evaluation temperature must be 0 (greedy) or positive, got {temperature.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>"greedy" or "sampled (T = t)".</summary>
    public override string ToString() => Sampled ? string.Create(CultureInfo.InvariantCulture, $"sampled (T = {Temperature})") : "greedy";
}

/// <summary>Collecting the teacher's offline data, and evaluating a policy on a set of levels.</summary>
internal static class Rollouts
{
    /// <summary>
    /// The teacher: the environment's planner, with per-episode noise so that the data's quality is mixed.
    /// Episode e plays level <c>levels[e % levels.Length]</c>; its noise level is drawn uniformly from
    /// [0, <paramref name="maxNoise"/>], and at each step it takes a uniformly random action with that probability.
    /// </summary>
    public static OfflineDataset Collect(string environment, ulong[] levels, int episodes, double maxNoise, ulong seed)
    {
        if (episodes <= 0 || levels.Length == 0)
        {
            throw new EngineException($"collect: need at least one episode and one level, got {episodes} episodes and {levels.Length} levels");
        }

        if (!(maxNoise >= 0 && maxNoise <= 1))
        {
            throw new EngineException($"collect: the noise must be in [0, 1], got {maxNoise}");
        }

        GridEnvironment env = OfflineEnvironments.Create(environment);
        var random = new SplitMix64(seed);
        var observations = new List<float>();
        var actions = new List<int>();
        var rewards = new List<float>();
        var episodeIds = new List<int>();
        var returns = new float[episodes];
        var obs = new float[env.ObservationSize];
        for (int e = 0; e < episodes; e++)
        {
            env.Reset(levels[e % levels.Length]);
            double noise = maxNoise * random.NextDouble();
            double total = 0;
            while (!env.Done)
            {
                env.Observe(obs);
                int action = random.NextDouble() < noise ? random.NextInt(env.ActionCount) : env.PlannerAction();
                float reward = env.Step(action);
                observations.AddRange(obs);
                actions.Add(action);
                rewards.Add(reward);
                episodeIds.Add(e);
                total += reward;
            }

            returns[e] = (float)total;
        }

        return new OfflineDataset(environment, env.ActionCount, [env.Channels, env.View, env.View], [.. observations], [.. actions],
            [.. rewards], [.. episodeIds], returns);
    }

    /// <summary>Philox stream of evaluation draws (the generator's sampling uses 1).</summary>
    private const uint EvaluationStream = 0x0FF1;

    /// <summary>
    /// Mean return of the policy over one episode per level, acting as <paramref name="evaluation"/> says (greedy when
    /// not given); all levels run side by side so each step is one batched forward.
    /// </summary>
    public static double MeanReturn(MlpPolicy policy, string environment, ulong[] levels, ActionSelection evaluation = default)
    {
        var envs = new GridEnvironment[levels.Length];
        var returns = new double[levels.Length];
        for (int i = 0; i < levels.Length; i++)
        {
            envs[i] = OfflineEnvironments.Create(environment);
            envs[i].Reset(levels[i]);
        }

        int size = envs[0].ObservationSize;
        if (size != policy.InputSize || envs[0].ActionCount != policy.Actions)
        {
            throw new EngineException(
                $"the policy takes {policy.InputSize} inputs and {policy.Actions} actions, '{environment}' has {size} and {envs[0].ActionCount}");
        }

        var batch = new float[levels.Length * size];
        var actions = new int[levels.Length];
        var uniforms = evaluation.Sampled ? new float[levels.Length] : null;
        var active = new List<int>(levels.Length);
        for (uint step = 0; ; step++)
        {
            active.Clear();
            for (int i = 0; i < envs.Length; i++)
            {
                if (!envs[i].Done)
                {
                    envs[i].Observe(batch.AsSpan(active.Count * size, size));
                    active.Add(i);
                }
            }

            if (active.Count == 0)
            {
                break;
            }

            if (uniforms is not null)
            {
                for (int k = 0; k < active.Count; k++)
                {
                    uniforms[k] = Philox.Uniform(evaluation.Seed, EvaluationStream, levels[active[k]], step);
                }
            }

            policy.Act(batch, active.Count, actions, evaluation.Temperature, uniforms);
            for (int k = 0; k < active.Count; k++)
            {
                returns[active[k]] += envs[active[k]].Step(actions[k]);
            }
        }

        return returns.Average();
    }

    /// <summary>Mean return of the planner itself (noise-free) over one episode per level: the teacher's ceiling.</summary>
    public static double PlannerMeanReturn(string environment, ulong[] levels)
    {
        double total = 0;
        foreach (ulong level in levels)
        {
            GridEnvironment env = OfflineEnvironments.Create(environment);
            env.Reset(level);
            while (!env.Done)
            {
                total += env.Step(env.PlannerAction());
            }
        }

        return total / levels.Length;
    }
}
