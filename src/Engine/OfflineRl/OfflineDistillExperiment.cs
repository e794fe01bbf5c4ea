using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Core;

namespace Engine.OfflineRl;

/// <summary>Settings of the offline-distillation experiment (one repetition per seed).</summary>
internal sealed record OfflineDistillSettings
{
    /// <summary>Built-in environment.</summary>
    public string Environment { get; init; } = "bigfish";

    /// <summary>Training levels (seeds 0..n-1): the data's levels and the in-distribution evaluation.</summary>
    public int TrainLevels { get; init; } = 200;

    /// <summary>Unseen levels for the out-of-distribution evaluation.</summary>
    public int UnseenLevels { get; init; } = 200;

    /// <summary>Teacher episodes in the offline data (cycling over the training levels).</summary>
    public int Episodes { get; init; } = 200;

    /// <summary>Largest per-episode noise of the teacher.</summary>
    public double MaxNoise { get; init; } = 0.8;

    /// <summary>
    /// How every arm is evaluated: greedy or sampled (the sampling seed is each repetition's seed). Default: the
    /// environment's (<see cref="DefaultEvaluation"/>).
    /// </summary>
    public ActionSelection? Evaluation { get; init; }

    /// <summary>Hidden width of the MLP.</summary>
    public int Hidden { get; init; } = 128;

    /// <summary>BC on the real data (full and percentile).</summary>
    public BcOptions Bc { get; init; } = new() { Steps = 1500, BatchSize = 256, LearningRate = 1e-3f, Loss = BcLoss.Mse };

    /// <summary>BC on a small set (random subset, distilled): full-batch.</summary>
    public BcOptions SmallSetBc { get; init; } = new() { Steps = 300, BatchSize = 4096, LearningRate = 5e-3f, Loss = BcLoss.Mse };

    /// <summary>Percentile BC keeps this top fraction of episodes by return.</summary>
    public double Percentile { get; init; } = 0.25;

    /// <summary>Synthetic set size (and the random subset's).</summary>
    public int SyntheticSize { get; init; } = 200;

    /// <summary>The extra arm: the live student re-initialised every this many outer steps.</summary>
    public int ReinitializeEvery { get; init; } = 10;

    /// <summary>
    /// The trajectory arm: frozen matching against these checkpoints (BC updates done) of a BC run on the full data from
    /// another random initialisation than the evaluated student's; its last entry is the run's length.
    /// </summary>
    public int[] TrajectoryCheckpoints { get; init; } = [0, 10, 25, 50, 100, 200, 400, 800];

    /// <summary>Distillation settings.</summary>
    public DistillOptions Distill { get; init; } = new() { OuterSteps = 400, RealBatch = 256, LearningRate = 0.1f, Momentum = 0.5f, Loss = BcLoss.Mse };

    /// <summary>
    /// The evaluation an environment gets unless told otherwise: sampled at temperature 1 on maze (a greedy policy loops
    /// where corridors look alike), greedy on bigfish (the fish move, so a greedy policy does not repeat itself).
    /// </summary>
    public static ActionSelection DefaultEvaluation(string environment) => environment == "maze" ? OfflineRl.ActionSelection.Create(1f, 0) : OfflineRl.ActionSelection.Greedy;

    /// <summary>The reduced CI version: fewer levels, episodes and steps, same arms.</summary>
    public static OfflineDistillSettings Quick() => new()
    {
        TrainLevels = 20,
        UnseenLevels = 20,
        Episodes = 20,
        Hidden = 32,
        ReinitializeEvery = 5,
        TrajectoryCheckpoints = [0, 10, 30],
        Bc = new BcOptions { Steps = 60, BatchSize = 128, LearningRate = 3e-3f, Loss = BcLoss.Mse },
        SmallSetBc = new BcOptions { Steps = 40, BatchSize = 4096, LearningRate = 5e-3f, Loss = BcLoss.Mse },
        SyntheticSize = 20,
        Distill = new DistillOptions { OuterSteps = 10, RealBatch = 64, LearningRate = 0.1f, Momentum = 0.5f, Loss = BcLoss.Mse, StudentSteps = 5 },
    };
}

/// <summary>
/// <c>engine experiment offline-distill</c>: per seed, collect the teacher's data on the training levels, then train
/// five policies (full BC, percentile BC, a random class-balanced real subset of the synthetic set's size, the set
/// distilled against a frozen full-BC network, and the live student of the live mode) and evaluate each on
/// the training levels and on unseen levels (greedily or sampled, <see cref="OfflineDistillSettings.Evaluation"/>). Writes
/// summary.json and report.html.
/// </summary>
internal static class OfflineDistillExperiment
{
    /// <summary>The arms, in report order.</summary>
    public static readonly string[] Arms =
        ["full_bc", "percentile_bc", "random_subset", "distilled", "distilled_live", "distilled_reinit", "distilled_trajectory", "random_subset_noise"];

    /// <summary>Runs every seed and writes DIR/summary.json and DIR/report.html; returns the summary.</summary>
    public static JsonObject Run(Accelerator acc, OfflineDistillSettings settings, IReadOnlyList<ulong> seeds, string outDir, Action<string>? log = null)
    {
        if (seeds.Count == 0)
        {
            throw new EngineException("offline-distill: at least one seed is needed");
        }

        Directory.CreateDirectory(outDir);
        var clock = Stopwatch.StartNew();
        ActionSelection evaluation = settings.Evaluation ?? OfflineDistillSettings.DefaultEvaluation(settings.Environment);
        ulong[] trainLevels = OfflineEnvironments.TrainingLevels(settings.TrainLevels);
        ulong[] unseenLevels = OfflineEnvironments.UnseenLevels(settings.UnseenLevels);
        var results = Arms.ToDictionary(a => a, _ => new SortedDictionary<ulong, (double Train, double Unseen)>());
        var datasetSizes = new List<int>();
        var dataReturns = new List<double>();
        var agreement = new List<(double Before, double After)>();
        (float[] Real, float[] Distilled, int[] Labels, int[] Shape)? pictures = null;
        foreach (ulong seed in seeds)
        {
            OfflineDataset data = Rollouts.Collect(settings.Environment, trainLevels, settings.Episodes, settings.MaxNoise, seed);
            datasetSizes.Add(data.Count);
            dataReturns.Add(data.EpisodeReturns.Average());
            log?.Invoke($"seed {seed}: {data.Count} steps in {data.EpisodeCount} episodes, mean return {data.EpisodeReturns.Average():F2}");
            int maxBatch = Math.Max(Math.Max(settings.Bc.BatchSize, settings.SyntheticSize), Math.Max(settings.Distill.RealBatch, 256));
            MlpPolicy NewPolicy(ulong init)
            {
                var p = new MlpPolicy(acc, data.ObservationSize, settings.Hidden, data.ActionCount, maxBatch);
                p.Initialize(init);
                return p;
            }

            void Record(string arm, MlpPolicy policy)
            {
                double train = Rollouts.MeanReturn(policy, settings.Environment, trainLevels, evaluation with { Seed = seed });
                double unseen = Rollouts.MeanReturn(policy, settings.Environment, unseenLevels, evaluation with { Seed = seed });
                results[arm][seed] = (train, unseen);
                log?.Invoke($"seed {seed}: {arm,-15} train {train,7:F3}  unseen {unseen,7:F3}  ({clock.Elapsed.TotalSeconds:F0} s)");
            }

            ulong initSeed = seed * 1000 + 1;
            int[] allRows = Enumerable.Range(0, data.Count).ToArray();
            using MlpPolicy full = NewPolicy(initSeed);
            BehaviourCloning.Train(full, data.Observations, data.Actions, allRows, settings.Bc with { Seed = seed });
            Record("full_bc", full);

            using (MlpPolicy percentile = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(percentile, data.Observations, data.Actions, data.TopEpisodeRows(settings.Percentile), settings.Bc with { Seed = seed });
                Record("percentile_bc", percentile);
            }

            // The random subset is also the distilled sets' starting point, so "distilled" differs from it only by distillation.
            SyntheticSet subset = SyntheticSet.FromRealStates(data, settings.SyntheticSize, seed * 1000 + 2);
            int[] smallRows = Enumerable.Range(0, subset.Count).ToArray();
            using (MlpPolicy small = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(small, subset.States, subset.Labels.ToArray(), smallRows, settings.SmallSetBc with { Seed = seed });
                Record("random_subset", small);
            }

            SyntheticSet frozenSet = SyntheticSet.FromRealStates(data, settings.SyntheticSize, seed * 1000 + 2);
            using (var distiller = new Distiller(data, frozenSet, full, MatchingMode.Frozen, settings.Distill with { Seed = seed }))
            {
                double[] d = distiller.Run();
                log?.Invoke($"seed {seed}: frozen-mode distance {Window(d, 0):G3} -> {Window(d, d.Length - 1):G3}, states moved {Moved(subset, frozenSet):G3} of their norm");
            }

            // Diagnostic: how often the full-BC network's greedy action equals the fixed label, on the states before and after
            // frozen-mode distillation (matching a converged network's gradients on noisy labels reproduces its residual errors).
            double agreeBefore = Agreement(full, subset), agreeAfter = Agreement(full, frozenSet);
            agreement.Add((agreeBefore, agreeAfter));
            log?.Invoke($"seed {seed}: full-BC network agrees with the labels on {agreeBefore:P1} of the subset, {agreeAfter:P1} of the distilled set");

            using (MlpPolicy student = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(student, frozenSet.States, frozenSet.Labels.ToArray(), smallRows, settings.SmallSetBc with { Seed = seed });
                Record("distilled", student);
            }

            // A control for the distilled arm: the random subset moved as far as distillation moved it, but in a random
            // direction (Gaussian, same norm, clamped to the data's range like the distilled states).
            float[] noisy = WithNoise(subset.States, Moved(subset, frozenSet), data, seed * 1000 + 3);
            using (MlpPolicy student = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(student, noisy, subset.Labels.ToArray(), smallRows, settings.SmallSetBc with { Seed = seed });
                Record("random_subset_noise", student);
            }

            SyntheticSet liveSet = SyntheticSet.FromRealStates(data, settings.SyntheticSize, seed * 1000 + 2);
            using (MlpPolicy live = NewPolicy(initSeed))
            {
                using (var distiller = new Distiller(data, liveSet, live, MatchingMode.Live, settings.Distill with { Seed = seed }))
                {
                    double[] d = distiller.Run();
                    log?.Invoke($"seed {seed}: live-mode distance {Window(d, 0):G3} -> {Window(d, d.Length - 1):G3}, states moved {Moved(subset, liveSet):G3} of their norm");
                }

                Record("distilled_live", live);
            }

            // Beyond the paper's two modes: the live student re-sampled every few steps (as the original gradient matching
            // does), then a fresh student trained on the set like the random subset's.
            SyntheticSet reinitSet = SyntheticSet.FromRealStates(data, settings.SyntheticSize, seed * 1000 + 2);
            using (MlpPolicy matching = NewPolicy(initSeed + 7))
            {
                using var distiller = new Distiller(data, reinitSet, matching, MatchingMode.Live,
                    settings.Distill with { Seed = seed, ReinitializeEvery = settings.ReinitializeEvery });
                double[] d = distiller.Run();
                log?.Invoke($"seed {seed}: re-initialised live-mode distance {Window(d, 0):G3} -> {Window(d, d.Length - 1):G3}, states moved {Moved(subset, reinitSet):G3} of their norm");
            }

            using (MlpPolicy student = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(student, reinitSet.States, reinitSet.Labels.ToArray(), smallRows, settings.SmallSetBc with { Seed = seed });
                Record("distilled_reinit", student);
            }

            // Beyond the paper's two modes: frozen matching at several points of a BC run on the full data (from another
            // initialisation than the student's), from random weights to convergence, cycled over the outer steps: the
            // gradients a fresh student meets early in training are matched too, not only those of a converged network.
            SyntheticSet trajectorySet = SyntheticSet.FromRealStates(data, settings.SyntheticSize, seed * 1000 + 2);
            using (MlpPolicy path = NewPolicy(initSeed + 7))
            {
                int[] keep = settings.TrajectoryCheckpoints;
                var checkpoints = new List<float[]>();
                if (keep.Contains(0))
                {
                    checkpoints.Add(path.GetParameters());
                }

                BehaviourCloning.Train(path, data.Observations, data.Actions, allRows, settings.Bc with { Seed = seed + 7, Steps = keep.Max() },
                    done => { if (keep.Contains(done)) { checkpoints.Add(path.GetParameters()); } });
                using var distiller = new Distiller(data, trajectorySet, path, MatchingMode.Frozen, settings.Distill with { Seed = seed }, checkpoints);
                double[] d = distiller.Run();
                log?.Invoke($"seed {seed}: trajectory-mode distance {Window(d, 0):G3} -> {Window(d, d.Length - 1):G3}, states moved {Moved(subset, trajectorySet):G3} of their norm");
            }

            using (MlpPolicy student = NewPolicy(initSeed))
            {
                BehaviourCloning.Train(student, trajectorySet.States, trajectorySet.Labels.ToArray(), smallRows, settings.SmallSetBc with { Seed = seed });
                Record("distilled_trajectory", student);
            }

            pictures ??= (subset.States, frozenSet.States, subset.Labels.ToArray(), data.ObservationShape);
        }

        var arms = new JsonObject();
        foreach (string arm in Arms)
        {
            var perSeed = new JsonObject();
            foreach (var (seed, (train, unseen)) in results[arm])
            {
                perSeed[seed.ToString(CultureInfo.InvariantCulture)] = new JsonObject { ["train"] = Round(train), ["unseen"] = Round(unseen) };
            }

            arms[arm] = new JsonObject
            {
                ["per_seed"] = perSeed,
                ["mean_train"] = Round(results[arm].Values.Average(r => r.Train)),
                ["mean_unseen"] = Round(results[arm].Values.Average(r => r.Unseen)),
            };
        }

        double fullTrain = results["full_bc"].Values.Average(r => r.Train);
        double distilledTrain = results["distilled"].Values.Average(r => r.Train);
        double subsetTrain = results["random_subset"].Values.Average(r => r.Train);
        var summary = new JsonObject
        {
            ["environment"] = settings.Environment,
            ["evaluation"] = evaluation.ToString(),
            ["arms"] = arms,
            ["synthetic_size"] = settings.SyntheticSize,
            ["dataset_size"] = (int)Math.Round(datasetSizes.Average()),
            ["dataset_size_per_seed"] = new JsonArray([.. datasetSizes.Select(s => (JsonNode)s)]),
            ["dataset_mean_return"] = Round(dataReturns.Average()),
            ["planner_mean_return_train"] = Round(Rollouts.PlannerMeanReturn(settings.Environment, trainLevels)),
            ["train_levels"] = settings.TrainLevels,
            ["unseen_levels"] = settings.UnseenLevels,
            ["full_bc_label_agreement_subset"] = Round(agreement.Average(a => a.Before)),
            ["full_bc_label_agreement_distilled"] = Round(agreement.Average(a => a.After)),
            ["teacher_max_noise"] = settings.MaxNoise,
            ["claim_within_15pct_of_full_bc"] = distilledTrain >= 0.85 * fullTrain,
            ["claim_beats_random_subset"] = distilledTrain > subsetTrain,
            ["wall_seconds"] = Round(clock.Elapsed.TotalSeconds),
        };
        IO.AtomicFile.WriteAllText(Path.Combine(outDir, "summary.json"), summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        OfflineDistillReport.Write(Path.Combine(outDir, "report.html"), summary, pictures);
        return summary;
    }

    private static double Round(double v) => Math.Round(v, 4);

    /// <summary>Fraction of the set's states on which <paramref name="policy"/>'s greedy action is the state's label.</summary>
    private static double Agreement(MlpPolicy policy, SyntheticSet set)
    {
        var actions = new int[set.Count];
        policy.Act(set.States, set.Count, actions);
        int same = 0;
        for (int i = 0; i < set.Count; i++)
        {
            same += actions[i] == set.Labels[i] ? 1 : 0;
        }

        return (double)same / set.Count;
    }

    /// <summary>Mean of the distances in the tenth of the run around step <paramref name="at"/> (one step's distance is one noisy real batch).</summary>
    private static double Window(double[] distances, int at)
    {
        int width = Math.Max(1, distances.Length / 10);
        int start = Math.Clamp(at - width / 2, 0, distances.Length - width);
        return distances.Skip(start).Take(width).Average();
    }

    /// <summary>A copy of <paramref name="states"/> plus Gaussian noise of norm <paramref name="relative"/> times theirs, clamped to the data's range.</summary>
    private static float[] WithNoise(float[] states, double relative, OfflineDataset data, ulong seed)
    {
        var random = new Util.SplitMix64(seed);
        var noise = new double[states.Length];
        double noiseNorm = 0, norm = 0;
        for (int i = 0; i < states.Length; i++)
        {
            noise[i] = random.NextGaussian();
            noiseNorm += noise[i] * noise[i];
            norm += (double)states[i] * states[i];
        }

        double scale = relative * Math.Sqrt(norm / Math.Max(noiseNorm, 1e-30));
        float lowest = data.Observations.Min(), highest = data.Observations.Max();
        var result = new float[states.Length];
        for (int i = 0; i < states.Length; i++)
        {
            result[i] = Math.Clamp((float)(states[i] + scale * noise[i]), lowest, highest);
        }

        return result;
    }

    /// <summary>|S - S0| / |S0|: how far distillation moved the states from the real ones they started as.</summary>
    private static double Moved(SyntheticSet start, SyntheticSet end)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < start.States.Length; i++)
        {
            diff += (end.States[i] - (double)start.States[i]) * (end.States[i] - start.States[i]);
            norm += (double)start.States[i] * start.States[i];
        }

        return Math.Sqrt(diff / Math.Max(norm, 1e-30));
    }
}
