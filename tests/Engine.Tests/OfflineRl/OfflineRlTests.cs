using Engine.Core;
using Engine.IO;
using Engine.Kernels.Cpu;
using Engine.OfflineRl;
using Engine.Tests.Support;
using Engine.Util;

namespace Engine.Tests.OfflineRl;

/// <summary>The offline RL pieces: environments, the dataset format, BC and gradient-matching distillation.</summary>
public sealed class OfflineRlTests : IDisposable
{
    private readonly CpuAccelerator acc = TestDevices.Cpu();

    public void Dispose() => acc.Dispose();

    [Theory]
    [InlineData("bigfish")]
    [InlineData("maze")]
    public void Environment_is_deterministic_per_level_seed_and_action_sequence(string name)
    {
        (float[] Obs, float[] Rewards) Play(ulong level, ulong actionSeed)
        {
            GridEnvironment env = OfflineEnvironments.Create(name);
            env.Reset(level);
            var random = new SplitMix64(actionSeed);
            var obs = new List<float>();
            var rewards = new List<float>();
            var o = new float[env.ObservationSize];
            while (!env.Done)
            {
                env.Observe(o);
                obs.AddRange(o);
                rewards.Add(env.Step(random.NextInt(env.ActionCount)));
            }

            return ([.. obs], [.. rewards]);
        }

        for (ulong level = 0; level < 5; level++)
        {
            var first = Play(level, 7);
            var second = Play(level, 7);
            Assert.Equal(first.Obs, second.Obs);
            Assert.Equal(first.Rewards, second.Rewards);
        }

        // Different level seeds make different levels (the first observation already differs for some pair).
        var firstObservations = Enumerable.Range(0, 5).Select(l => Play((ulong)l, 7).Obs.Take(OfflineEnvironments.Create(name).ObservationSize).ToArray()).ToList();
        Assert.True(firstObservations.Distinct(new ArrayComparer()).Count() > 1);
    }

    [Fact]
    public void Planner_teacher_beats_random_actions()
    {
        foreach (string name in OfflineEnvironments.Names)
        {
            ulong[] levels = OfflineEnvironments.TrainingLevels(20);
            double planner = Rollouts.PlannerMeanReturn(name, levels);
            OfflineDataset noisy = Rollouts.Collect(name, levels, 20, 1.0, 3);
            Assert.True(planner > noisy.EpisodeReturns.Average(), $"{name}: planner {planner}, noisy {noisy.EpisodeReturns.Average()}");
        }
    }

    [Fact]
    public void Distance_is_zero_when_synthetic_and_real_batches_coincide()
    {
        using MlpPolicy net = TinyNet(seed: 3);
        var (states, labels) = Blobs(8, 6, 3, seed: 5, classOf: _ => 1);
        using var matcher = new GradientMatcher(net, BcLoss.Mse);
        var gradient = new float[states.Length];
        double d = matcher.Distance(states, labels, 8, states, labels, 8, gradient);
        Assert.Equal(0.0, d);
        Assert.All(gradient, g => Assert.Equal(0f, g));
        // And it is not zero for a different batch.
        var (other, _) = Blobs(8, 6, 3, seed: 6, classOf: _ => 1);
        Assert.True(matcher.Distance(other, labels, 8, states, labels, 8, default) > 0);
    }

    [Theory]
    [InlineData("mse")]
    [InlineData("ce")]
    public void Distance_gradient_wrt_states_matches_finite_differences_of_the_distance(string lossName)
    {
        BcLoss loss = BcLossHead.Parse(lossName);
        using MlpPolicy net = TinyNet(seed: 11);
        const int nSyn = 4, nReal = 9, d = 6;
        var (syn, synLabels) = Blobs(nSyn, d, 3, seed: 21, classOf: _ => 2);
        var (real, realLabels) = Blobs(nReal, d, 3, seed: 22, classOf: _ => 2);
        using var matcher = new GradientMatcher(net, loss, radius: 1e-2);
        var analytic = new float[syn.Length];
        matcher.Distance(syn, synLabels, nSyn, real, realLabels, nReal, analytic);

        var numeric = new double[syn.Length];
        const float h = 1e-2f;
        for (int i = 0; i < syn.Length; i++)
        {
            float keep = syn[i];
            syn[i] = keep + h;
            double up = matcher.Distance(syn, synLabels, nSyn, real, realLabels, nReal, default);
            syn[i] = keep - h;
            double down = matcher.Distance(syn, synLabels, nSyn, real, realLabels, nReal, default);
            syn[i] = keep;
            numeric[i] = (up - down) / (2 * h);
        }

        double diff = 0, norm = 0;
        for (int i = 0; i < syn.Length; i++)
        {
            diff += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
            norm += numeric[i] * numeric[i];
        }

        Assert.True(norm > 0);
        Assert.True(Math.Sqrt(diff / norm) < 1e-3, $"relative error {Math.Sqrt(diff / norm):G3}");
    }

    [Theory]
    [InlineData("mse")]
    [InlineData("mae")]
    [InlineData("ce")]
    public void Bc_parameter_gradient_matches_finite_differences_of_the_loss(string lossName)
    {
        BcLoss loss = BcLossHead.Parse(lossName);
        using MlpPolicy net = TinyNet(seed: 4);
        var (states, labels) = Blobs(7, 6, 3, seed: 8, classOf: i => i % 3);
        net.LossAndGradients(states, labels, 7, loss);
        float[] analytic = acc.ToArray(net.Grads.All);
        float[] theta = net.GetParameters();
        const float h = 1e-2f;
        double diff = 0, norm = 0;
        for (int i = 0; i < theta.Length; i++)
        {
            float keep = theta[i];
            theta[i] = keep + h;
            net.SetParameters(theta);
            double up = net.LossAndGradients(states, labels, 7, loss);
            theta[i] = keep - h;
            net.SetParameters(theta);
            double down = net.LossAndGradients(states, labels, 7, loss);
            theta[i] = keep;
            double numeric = (up - down) / (2 * h);
            diff += (analytic[i] - numeric) * (analytic[i] - numeric);
            norm += numeric * numeric;
        }

        Assert.True(Math.Sqrt(diff / norm) < 2e-3, $"relative error {Math.Sqrt(diff / norm):G3}");
    }

    [Fact]
    public void Labels_never_change_and_states_move_in_both_modes()
    {
        OfflineDataset data = ToyDataset(120, seed: 2);
        foreach (MatchingMode mode in new[] { MatchingMode.Frozen, MatchingMode.Live })
        {
            SyntheticSet set = SyntheticSet.FromRealStates(data, 7, seed: 9);
            int[] labelsBefore = set.Labels.ToArray();
            float[] statesBefore = (float[])set.States.Clone();
            using MlpPolicy net = TinyNet(seed: 5);
            using (var distiller = new Distiller(data, set, net, mode, new DistillOptions { OuterSteps = 5, RealBatch = 16, LearningRate = 1f, StudentSteps = 2 }))
            {
                distiller.Run();
            }

            Assert.Equal(labelsBefore, set.Labels.ToArray());
            Assert.NotEqual(statesBefore, set.States);
        }
    }

    [Fact]
    public void Frozen_matching_against_checkpoints_uses_them_in_turn()
    {
        OfflineDataset data = ToyDataset(120, seed: 2);
        var options = new DistillOptions { OuterSteps = 1, RealBatch = 16, LearningRate = 1f };
        using MlpPolicy a = TinyNet(seed: 5), b = TinyNet(seed: 6);
        float[] paramsA = a.GetParameters(), paramsB = b.GetParameters();

        // One step against checkpoint B on network A moves the states exactly as one plain step on network B.
        SyntheticSet viaCheckpoint = SyntheticSet.FromRealStates(data, 7, seed: 9), plain = SyntheticSet.FromRealStates(data, 7, seed: 9);
        using (var d = new Distiller(data, viaCheckpoint, a, MatchingMode.Frozen, options, [paramsB]))
        {
            d.Run();
        }

        using (var d = new Distiller(data, plain, b, MatchingMode.Frozen, options))
        {
            d.Run();
        }

        Assert.Equal(plain.States, viaCheckpoint.States);

        // Three steps over [A, B] end on A (step t uses checkpoint t mod 2).
        using (var d = new Distiller(data, SyntheticSet.FromRealStates(data, 7, seed: 9), b, MatchingMode.Frozen, options with { OuterSteps = 3 }, [paramsA, paramsB]))
        {
            d.Run();
        }

        Assert.Equal(paramsA, b.GetParameters());
        Assert.Throws<EngineException>(() => new Distiller(data, plain, a, MatchingMode.Live, options, [paramsA]));
        Assert.Throws<EngineException>(() => new Distiller(data, plain, a, MatchingMode.Frozen, options, [new float[3]]));
    }

    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(3)]
    public void Class_buckets_are_balanced_within_one(int size)
    {
        OfflineDataset data = ToyDataset(60, seed: 4);
        SyntheticSet set = SyntheticSet.FromRealStates(data, size, seed: 1);
        int[] present = Enumerable.Range(0, data.ActionCount).Where(a => data.Actions.Contains(a)).ToArray();
        int[] counts = present.Select(a => set.BucketCount[a]).ToArray();
        Assert.Equal(size, counts.Sum());
        Assert.True(counts.Max() - counts.Min() <= 1, string.Join(",", counts));
        foreach (int a in present)
        {
            for (int i = 0; i < set.BucketCount[a]; i++)
            {
                Assert.Equal(a, set.Labels[set.BucketStart[a] + i]);
            }
        }
    }

    [Fact]
    public void Bc_reaches_high_accuracy_on_a_separable_toy_set()
    {
        OfflineDataset data = ToyDataset(300, seed: 6);
        using var net = new MlpPolicy(acc, data.ObservationSize, 16, data.ActionCount, 64);
        net.Initialize(1);
        int[] rows = Enumerable.Range(0, data.Count).ToArray();
        BehaviourCloning.Train(net, data.Observations, data.Actions, rows, new BcOptions { Steps = 300, BatchSize = 64, LearningRate = 1e-2f, Loss = BcLoss.Mse });
        Assert.True(BehaviourCloning.Accuracy(net, data.Observations, data.Actions, rows) > 0.95);
    }

    [Fact]
    public void Dataset_round_trips_and_malformed_files_are_one_line_errors()
    {
        using var temp = new Cli.TempDir();
        OfflineDataset data = Rollouts.Collect("maze", OfflineEnvironments.TrainingLevels(3), 3, 0.5, 1);
        string good = temp.File("good.safetensors");
        data.Save(good);
        OfflineDataset back = OfflineDataset.Load(good);
        Assert.Equal(data.Observations, back.Observations);
        Assert.Equal(data.Actions, back.Actions);
        Assert.Equal(data.EpisodeReturns, back.EpisodeReturns);

        void Bad(string expected, Action<SafeTensorsWriter> tamper, Dictionary<string, string>? metadata = null)
        {
            string path = temp.File($"bad{Guid.NewGuid():N}.safetensors");
            var writer = new SafeTensorsWriter(metadata ?? new Dictionary<string, string> { ["action_count"] = "4" });
            tamper(writer);
            writer.Write(path);
            var e = Assert.Throws<EngineException>(() => OfflineDataset.Load(path));
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }

        int n = data.Count;
        void Columns(SafeTensorsWriter w, int[]? actions = null, float[]? returns = null, int[]? episodes = null, bool rewards = true)
        {
            w.Add("observations", [n, 2, 9, 9], data.Observations);
            w.AddInt32("actions", [n], actions ?? data.Actions);
            if (rewards)
            {
                w.Add("rewards", [n], data.Rewards);
            }

            w.AddInt32("episode_ids", [n], episodes ?? data.EpisodeIds);
            w.Add("episode_returns", [(returns ?? data.EpisodeReturns).Length], returns ?? data.EpisodeReturns);
        }

        Bad("action 7 at row 0", w => Columns(w, actions: [7, .. data.Actions.Skip(1)]));
        Bad("'rewards' is missing", w => Columns(w, rewards: false));
        Bad("is not the sum of its rewards", w => Columns(w, returns: data.EpisodeReturns.Select(r => r + 1).ToArray()));
        Bad("episode ids must start at 0", w => Columns(w, episodes: data.EpisodeIds.Select(e => e * 2).ToArray()));
        Bad("action_count", w => Columns(w), new Dictionary<string, string> { ["action_count"] = "x" });
        Bad("must be [", w =>
        {
            w.Add("observations", [n, 162], data.Observations);
            w.AddInt32("actions", [n - 1], data.Actions.AsMemory(0, n - 1));
            w.Add("rewards", [n], data.Rewards);
            w.AddInt32("episode_ids", [n], data.EpisodeIds);
            w.Add("episode_returns", [data.EpisodeCount], data.EpisodeReturns);
        });
    }

    [Fact]
    public void Quick_experiment_writes_summary_and_report()
    {
        using var temp = new Cli.TempDir();
        var summary = OfflineDistillExperiment.Run(acc, OfflineDistillSettings.Quick(), [1], temp.Path);
        Assert.True(File.Exists(temp.File("summary.json")));
        Assert.True(File.Exists(temp.File("report.html")));
        var parsed = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File("summary.json")))!;
        foreach (string arm in OfflineDistillExperiment.Arms)
        {
            Assert.NotNull(parsed["arms"]![arm]!["per_seed"]!["1"]!["train"]);
            Assert.NotNull(parsed["arms"]![arm]!["mean_unseen"]);
        }

        Assert.Equal(20, (int)parsed["synthetic_size"]!);
        Assert.True((int)parsed["dataset_size"]! > 0);
        Assert.Contains("<svg", File.ReadAllText(temp.File("report.html")));
        Assert.Equal(summary["dataset_size"]!.ToJsonString(), parsed["dataset_size"]!.ToJsonString());
    }

    [Fact]
    public void A_sampled_action_inverts_the_tempered_softmax_cdf()
    {
        // softmax(0, ln 3) = (1/4, 3/4); at temperature 2 the weights are (1, sqrt 3): p0 = 1 / (1 + sqrt 3) = 0.366.
        float[] row = [0f, MathF.Log(3f)];
        Assert.Equal(0, MlpPolicy.SampleAction(row, 1f, 0.2f));
        Assert.Equal(1, MlpPolicy.SampleAction(row, 1f, 0.3f));
        Assert.Equal(0, MlpPolicy.SampleAction(row, 2f, 0.35f));
        Assert.Equal(1, MlpPolicy.SampleAction(row, 2f, 0.38f));
        Assert.Equal(1, MlpPolicy.SampleAction(row, 1f, 0.999999f));
    }

    [Fact]
    public void Sampled_evaluation_is_keyed_by_seed_and_level_not_by_the_batch()
    {
        var net = new MlpPolicy(acc, OfflineEnvironments.Create("bigfish").ObservationSize, 8, 5, 16);
        using (net)
        {
            net.Initialize(3);
            ulong[] levels = OfflineEnvironments.TrainingLevels(6);
            var sampled = ActionSelection.Create(1f, 7);
            double together = Rollouts.MeanReturn(net, "bigfish", levels, sampled);
            double alone = levels.Sum(l => Rollouts.MeanReturn(net, "bigfish", [l], sampled)) / levels.Length;
            Assert.Equal(together, alone, 12);
            Assert.Equal(together, Rollouts.MeanReturn(net, "bigfish", levels.Reverse().ToArray(), sampled), 12);

            // Another seed plays other episodes (bigfish returns vary with the actions, so per-level returns differ somewhere), and greedy play is not sampled play.
            double[] PerLevel(ActionSelection e) => levels.Select(l => Rollouts.MeanReturn(net, "bigfish", [l], e)).ToArray();
            Assert.NotEqual(PerLevel(sampled), PerLevel(ActionSelection.Create(1f, 8)));
            Assert.NotEqual(PerLevel(sampled), PerLevel(ActionSelection.Greedy));
        }

        Assert.Contains("temperature", Assert.Throws<EngineException>(() => ActionSelection.Create(-1f, 1)).Message);
    }

    private MlpPolicy TinyNet(ulong seed)
    {
        var net = new MlpPolicy(acc, 6, 5, 3, 32);
        net.Initialize(seed);
        return net;
    }

    /// <summary>n rows of d features around a per-class centre (class = classOf(row)), classes well apart.</summary>
    private static (float[] States, int[] Labels) Blobs(int n, int d, int classes, ulong seed, Func<int, int> classOf)
    {
        var random = new SplitMix64(seed);
        var states = new float[n * d];
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            labels[i] = classOf(i) % classes;
            for (int j = 0; j < d; j++)
            {
                states[i * d + j] = (j % classes == labels[i] ? 2f : 0f) + (float)(0.5 * random.NextGaussian());
            }
        }

        return (states, labels);
    }

    /// <summary>A separable toy dataset of 3 actions (6 features), one episode per 10 rows.</summary>
    private static OfflineDataset ToyDataset(int n, ulong seed)
    {
        var (states, labels) = Blobs(n, 6, 3, seed, i => (int)((((ulong)i * 2654435761UL) >> 7) % 3));
        return new OfflineDataset("", 3, [6], states, labels, new float[n], Enumerable.Range(0, n).Select(i => i / 10).ToArray(), new float[(n + 9) / 10]);
    }

    private sealed class ArrayComparer : IEqualityComparer<float[]>
    {
        public bool Equals(float[]? x, float[]? y) => x!.SequenceEqual(y!);

        public int GetHashCode(float[] obj) => obj.Length;
    }
}

/// <summary>`engine offline`: a malformed dataset is a one-line error and nothing is written.</summary>
[Collection(nameof(Cli.ConsoleCollection))]
public sealed class OfflineCliTests
{
    [Fact]
    public void Bc_on_a_malformed_dataset_fails_in_one_line_and_writes_nothing()
    {
        using var temp = new Cli.TempDir();
        string data = temp.File("data.safetensors");
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["action_count"] = "3" });
        writer.Add("observations", [2, 4], new float[8]);
        writer.AddInt32("actions", [2], new[] { 0, 5 });
        writer.Add("rewards", [2], new float[2]);
        writer.AddInt32("episode_ids", [2], new[] { 0, 0 });
        writer.Add("episode_returns", [1], new float[1]);
        writer.Write(data);
        string policy = temp.File("policy.safetensors");
        var (code, _, stderr) = Cli.CliRunner.Run("offline", "bc", "--data", data, "--out", policy, "--steps", "5");
        Assert.Equal(1, code);
        Assert.Contains("action 5 at row 1 is outside [0, 3)", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Equal([data], Directory.GetFiles(temp.Path));
    }

    [Fact]
    public void Collect_bc_distill_and_eval_run_end_to_end()
    {
        using var temp = new Cli.TempDir();
        string data = temp.File("data.safetensors"), policy = temp.File("policy.safetensors"), distilled = temp.File("distilled.safetensors");
        Assert.Equal(0, Cli.CliRunner.Run("offline", "collect", "--env", "maze", "--levels", "4", "--episodes", "4", "--out", data).ExitCode);
        Assert.Equal(0, Cli.CliRunner.Run("offline", "bc", "--data", data, "--out", policy, "--steps", "10", "--hidden", "16").ExitCode);
        var (code, _, stderr) = Cli.CliRunner.Run("offline", "distill", "--data", data, "--out", distilled, "--mode", "frozen", "--policy", policy,
            "--size", "8", "--steps", "3", "--real-batch", "16");
        Assert.True(code == 0, stderr);
        Assert.Equal(8, OfflineDataset.Load(distilled).Count);
        var (evalCode, stdout, _) = Cli.CliRunner.Run("offline", "eval", "--policy", policy, "--levels", "3", "--unseen");
        Assert.Equal(0, evalCode);
        Assert.Contains("\"mean_return\"", stdout);
    }
}
