using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Experiments;
using Engine.Generation;
using Engine.Model;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Pike;

/// <summary>Settings of <c>engine experiment pike</c>.</summary>
internal sealed record PikeExperimentOptions : ExperimentRunOptions
{
    /// <summary>The mixing settings of the adaptive arms (the tasks are the experiment's own).</summary>
    public MixOptions Mix { get; init; } = PikeExperiment.DefaultMix;

    /// <summary>The arms to run (null: all three).</summary>
    public IReadOnlyList<string>? Arms { get; init; }
}

/// <summary>
/// PiKE's comparison (methods.md §4) in shape: one model shape trained from scratch by multi-task SFT for the same
/// number of steps under uniform mixing, PiKE and Balanced-PiKE, on four built-in tasks of different difficulty and
/// noise: one-digit addition (much easier than the rest), two-digit addition, sorting, and two-digit addition marked
/// by a '?' before the prompt with half its training references wrong (label noise; tested on clean references). Per-task greedy test accuracy,
/// its average and its worst task, per seed (initialisation and data order).
/// </summary>
internal static class PikeExperiment
{
    /// <summary>The arms, in report order (summary.json names).</summary>
    public static readonly string[] AllArms = ["uniform", "pike", "balanced_pike"];

    /// <summary>The four tasks.</summary>
    public static readonly string[] TaskSpecs =
    [
        "easy=addition:min_digits=1,max_digits=1",
        "add2=addition:min_digits=2,max_digits=2",
        "sort=sorting:min_length=3,max_length=6",
        "noisy=addition:min_digits=2,max_digits=2,label_noise=0.5,marker=?",
    ];

    /// <summary>
    /// The mixing settings: the library defaults (zeta1, zeta2, T0, tau chosen by the sweep in src/Engine/Pike/README.md).
    /// Statistics from 16 examples per task (8 per half) rather than the task's share of the 32-example batch (2 to 8
    /// examples), for less noisy estimates (an extra cost the issue's one-backward bound does not cover; not swept).
    /// </summary>
    public static MixOptions DefaultMix { get; } = new() { Tasks = string.Join(';', TaskSpecs), Mixer = MixerKind.Pike, StatisticsExamples = 16 };

    private sealed record Setup(ModelOptions Model, SftOptions Sft, int EvalExamples);

    private static Setup For(bool quick, int? steps)
    {
        var model = new ModelOptions { Family = "gpt2", Layers = 2, Dim = 64, Heads = 4, MaxPositions = 24 };
        var sft = new SftOptions
        {
            Steps = steps ?? (quick ? 12 : 1500), BatchSize = 32, LearningRate = 3e-3f, WarmupSteps = quick ? 2 : 20,
            EvalEvery = quick ? 6 : 250, EvalExamples = quick ? 16 : 200,
        };
        return new Setup(model, sft, quick ? 16 : 200);
    }

    /// <summary>Runs every arm for every seed; writes summary.json and report.html into the output folder and returns the summary.</summary>
    public static JsonObject Run(PikeExperimentOptions options, Action<string>? log = null)
    {
        long started = Stopwatch.GetTimestamp();
        Setup setup = For(options.Quick, options.Steps);
        setup.Sft.Validate();
        MixOptions mix = options.Mix with { Tasks = string.Join(';', TaskSpecs) };
        mix.Validate();
        string[] arms = options.Arms?.ToArray() ?? AllArms;
        foreach (string arm in arms.Where(a => !AllArms.Contains(a)))
        {
            throw new EngineException($"pike experiment: unknown arm '{arm}' (expected {string.Join(", ", AllArms)})");
        }

        MixedTask tasks = MixedTask.Parse(TaskSpecs, 0);
        using Accelerator acc = Backends.Registry.Open(options.Device);
        var tokenizer = new CharTokenizer(tasks.Alphabet);
        var average = new ExperimentResults();   // final: average task accuracy; curves: accuracy, weights (series = tasks), cosine
        var worst = new ExperimentResults();
        var summaryArms = new JsonObject();
        foreach (string arm in arms)
        {
            var perSeed = new JsonObject();
            var allCosines = new List<double>();
            foreach (ulong seed in options.Seeds)
            {
                var (accuracy, weights, cosines) = RunArm(acc, tokenizer, tasks, setup, mix with { Mixer = Config.OptionsBinder.ParseEnum<MixerKind>(arm.Replace('_', '-'), "arm") }, seed, arm, average, worst);
                allCosines.AddRange(cosines);
                double avg = accuracy.Average(), low = accuracy.Min();
                average.Final(arm, seed, avg);
                worst.Final(arm, seed, low);
                var perTask = new JsonObject();
                for (int k = 0; k < accuracy.Length; k++)
                {
                    perTask[tasks.Labels[k]] = Math.Round(accuracy[k], 6);
                }

                var finalWeights = new JsonObject();
                for (int k = 0; k < weights.Length; k++)
                {
                    finalWeights[tasks.Labels[k]] = Math.Round(weights[k], 4);
                }

                perSeed[seed.ToString(CultureInfo.InvariantCulture)] = new JsonObject
                {
                    ["avg"] = Math.Round(avg, 6), ["worst"] = Math.Round(low, 6), ["per_task"] = perTask, ["final_weights"] = finalWeights,
                };
                log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                    $"seed {seed}: {arm,-14} avg {avg:P1}  worst {low:P1}  ({string.Join(", ", tasks.Labels.Select((l, k) => $"{l} {accuracy[k]:P0}"))})"));
            }

            summaryArms[arm] = new JsonObject
            {
                ["per_seed"] = perSeed, ["mean_avg"] = Math.Round(average.Mean(arm), 6), ["mean_worst"] = Math.Round(worst.Mean(arm), 6),
                ["mean_gradient_cosine"] = allCosines.Count > 0 ? Math.Round(allCosines.Average(), 4) : null,
            };
        }

        double wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var summary = new JsonObject
        {
            ["arms"] = summaryArms,
            ["tasks"] = new JsonArray([.. TaskSpecs.Select(s => (JsonNode)s)]),
            ["steps"] = setup.Sft.Steps,
            ["batch_size"] = setup.Sft.BatchSize,
            ["model"] = $"{setup.Model.Family} {setup.Model.Layers}x{setup.Model.Dim}, from scratch",
            ["metric"] = $"greedy test accuracy per task on {setup.EvalExamples} held-out examples (clean references)",
            ["mix"] = MixPerArm(mix),
            ["seeds"] = new JsonArray([.. options.Seeds.Select(s => (JsonNode)s)]),
            ["quick"] = options.Quick,
            ["wall_seconds"] = Math.Round(wall, 1),
        };
        Directory.CreateDirectory(options.OutDir);
        IO.AtomicFile.WriteAllText(Path.Combine(options.OutDir, "summary.json"), summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        var charts = new List<(string, string, string)>
        {
            ("test_accuracy", "Average task test accuracy (greedy)", "SFT step"),
            ("worst_accuracy", "Worst task test accuracy (greedy)", "SFT step"),
            ("cosine", "Mean pairwise cosine of task gradients", "SFT step"),
        };
        charts.AddRange(arms.Where(a => a != "uniform").Select(a => ("weights_" + a, $"Task weights w_k: {a}", "SFT step")));
        charts.AddRange(tasks.Labels.Select(l => ("accuracy_" + l, $"Test accuracy: {l}", "SFT step")));
        average.WriteReport(Path.Combine(options.OutDir, "report.html"), "PiKE: adaptive data mixing for multi-task SFT",
            $"{summary["model"]}, {setup.Sft.Steps} SFT steps of batch {setup.Sft.BatchSize} per arm on four tasks ({string.Join("; ", TaskSpecs)}); " +
            $"seeds {string.Join(", ", options.Seeds)}; wall time {wall:F0} s.", summary, charts);
        log?.Invoke("average task accuracy:\n" + average.Table("arm"));
        log?.Invoke("worst task accuracy:\n" + worst.Table("arm"));
        return summary;
    }

    /// <summary>One arm for one seed: a new model trained by multi-task SFT; returns each task's final test accuracy, the final weights and the gradient cosines.</summary>
    /// <summary>The mixture's settings for the summary: the mixer differs per arm.</summary>
    private static JsonObject MixPerArm(MixOptions mix)
    {
        JsonObject json = Config.OptionsBinder.ToJson(mix);
        json["mixer"] = "(per arm)";
        return json;
    }

    private static (double[] Accuracy, double[] Weights, List<double> Cosines) RunArm(Accelerator acc, CharTokenizer tokenizer, MixedTask tasks, Setup setup, MixOptions mix, ulong seed, string arm,
        ExperimentResults average, ExperimentResults worst)
    {
        SftOptions sft = setup.Sft with { Seed = seed, EvalEvery = 0 };
        using var model = new Transformer(acc, (setup.Model with { InitSeed = seed }).Build(tokenizer.VocabSize) with { EosTokenIds = [tokenizer.EosTokenId!.Value] });
        ModelInit.Initialize(model, seed, setup.Model.InitStd);
        TaskCodec codec = WarmStart.Codec(tokenizer, model);
        using var generator = new Generator(model, new GeneratorOptions { MaxSlots = 64, KvBudgetBytes = 64L << 20 });
        // The data depends on the seed through the tasks' generators (and their train/test split) and sft.seed's order.
        MixedTask seeded = MixedTask.Parse(TaskSpecs, seed);
        using var source = new MultiTaskSource(seeded, mix, sft.BatchSize);
        using var trainer = new SftTrainer(model, codec, seeded, sft, generator) { BatchSource = source };
        double[] Evaluate(int step)
        {
            double[] a = source.EvaluatePerTask(generator, codec, setup.EvalExamples, seed);
            average.Point("test_accuracy", arm, seed, step, a.Average());
            worst.Point("test_accuracy", arm, seed, step, a.Min());
            average.Point("worst_accuracy", arm, seed, step, a.Min());
            for (int k = 0; k < a.Length; k++)
            {
                average.Point("accuracy_" + tasks.Labels[k], arm, seed, step, a[k]);
            }

            return a;
        }

        var cosines = new List<double>();
        while (trainer.StepsDone < sft.Steps)
        {
            int step = trainer.StepsDone;
            trainer.Step();
            if (source.Mixer.Adaptive && step % mix.UpdateEvery == 0)
            {
                for (int k = 0; k < tasks.Labels.Count; k++)
                {
                    average.Point("weights_" + arm, tasks.Labels[k], seed, step, source.Mixer.Weights[k]);
                }

                if (source.LastCosine is double c && double.IsFinite(c))
                {
                    average.Point("cosine", arm, seed, step, c);
                    cosines.Add(c);
                }
            }

            if (setup.Sft.EvalEvery > 0 && trainer.StepsDone % setup.Sft.EvalEvery == 0 && trainer.StepsDone < sft.Steps)
            {
                Evaluate(trainer.StepsDone);
            }
        }

        return (Evaluate(sft.Steps), [.. source.Mixer.Weights], cosines);
    }
}
