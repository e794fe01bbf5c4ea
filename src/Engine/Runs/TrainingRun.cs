using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Distributed;
using Engine.Generation;
using Engine.Model;
using Engine.Rl;
using Engine.Runs;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine;

/// <summary>Where a run is, for progress displays.</summary>
/// <param name="Phase">"sft", "rl" or "eval".</param>
/// <param name="Step">Steps done in the phase.</param>
/// <param name="TotalSteps">Steps the phase will take.</param>
/// <param name="Status">A short line about the last step (loss, reward, accuracy ...).</param>
public sealed record RunProgress(string Phase, int Step, int TotalSteps, string Status);

/// <summary>The outcome of a run.</summary>
/// <param name="RunDirectory">The run folder.</param>
/// <param name="AccuracyBeforeRl">Test accuracy when RL started (avg@k at the rollout temperature, or greedy), if RL ran.</param>
/// <param name="AccuracyAfterRl">Test accuracy after RL (same metric), if RL ran.</param>
/// <param name="WallSeconds">Wall time of the whole run (resumed segments included).</param>
/// <param name="ReportPath">The HTML report.</param>
/// <param name="SummaryPath">summary.json.</param>
public sealed record RunResult(string RunDirectory, double? AccuracyBeforeRl, double? AccuracyAfterRl, double WallSeconds, string ReportPath,
    string SummaryPath)
{
    /// <summary>Greedy test accuracy when RL started, if RL ran.</summary>
    public double? GreedyAccuracyBeforeRl { get; init; }

    /// <summary>Greedy test accuracy after RL, if RL ran.</summary>
    public double? GreedyAccuracyAfterRl { get; init; }

    /// <summary>This process's rank in a data-parallel run (0 otherwise); rank 0 wrote the run folder.</summary>
    public int Rank { get; init; }
}

/// <summary>
/// A training run: SFT then RL on a task, from a new model or a checkpoint, writing the run folder
/// (config.json, metrics.jsonl, checkpoints, report.html, summary.json). A run resumed from its
/// last checkpoint continues bit-identically on the CPU.
/// </summary>
public static class TrainingRun
{
    /// <summary>
    /// Runs (or, with <paramref name="resume"/>, continues) a run in <paramref name="runDirectory"/>.
    /// When resuming, the options are read from the folder's config.json. With <paramref name="distributed"/> =
    /// <see cref="DistributedMode.Mpi"/> this process is one rank of a data-parallel job started by <c>mpiexec</c>:
    /// every rank must be given the same arguments; rank 0 alone writes the run folder and reports progress.
    /// </summary>
    public static RunResult Execute(RunOptions options, string runDirectory, bool resume = false, IProgress<RunProgress>? progress = null,
        DistributedMode distributed = DistributedMode.None) =>
        distributed == DistributedMode.None
            ? Execute(options, runDirectory, resume, progress, parallel: null)
            : DistributedRun.Execute(distributed, parallel => Execute(options, runDirectory, resume, parallel.Rank == 0 ? progress : null, parallel));

    private static RunResult Execute(RunOptions options, string runDirectory, bool resume, IProgress<RunProgress>? progress, DataParallel? parallel)
    {
        long started = Stopwatch.GetTimestamp();
        bool writes = parallel is not { Rank: > 0 };
        using var folder = new RunFolder(runDirectory) { ReadOnly = !writes };
        if (resume)
        {
            options = RunOptions.FromFile(folder.ConfigPath);
        }

        options.Validate();
        ITask task = options.Mix is { } mix ? Pike.MixedTask.Parse(mix.TaskSpecs, options.Task.Seed) : options.Task.Create();
        using Accelerator acc = Backends.Registry.Open(DataParallel.DeviceOfRank(options.Device.Length == 0 ? null : options.Device, parallel));
        var (model, tokenizer, originalConfig) = CreateModel(acc, options.Model, task);
        using Transformer policy = model;
        parallel?.RequireSameRun(DataParallel.Fingerprint(options.ToJson(), policy), "settings or starting weights");
        var codec = TaskCodec.For(tokenizer, policy.Config.EosTokenIds);
        RlOptions? rl = options.Rl is { Steps: > 0 } r ? r : null;
        SftOptions? sft = options.Sft is { Steps: > 0 } s ? s : null;
        using var generator = new Generator(policy, new GeneratorOptions
        {
            MaxSlots = rl?.MaxConcurrentSequences ?? 64,
            KvBudgetBytes = (long)(rl?.KvCacheMb ?? 64) << 20,
            Sampler = Samplers.Parse(rl?.Sampler ?? Samplers.Default),
        });

        JsonObject? state = null;
        string? checkpoint = resume ? TrainingCheckpoint.Latest(folder.CheckpointsPath) : null;
        if (resume && checkpoint is not null)
        {
            state = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, TrainingCheckpoint.StateFile)))!.AsObject();
            string phase = (string)state["phase"]!;
            int step = (int)HtmlReport.Number(state["step"])!.Value;
            folder.TruncateMetrics(m => PhaseOrder((string)m["phase"]!) < PhaseOrder(phase) ||
                                        ((string)m["phase"]! == phase && HtmlReport.Number(m["step"]) <= step));
        }
        else
        {
            folder.TruncateMetrics(_ => false);
            folder.WriteConfig(options.ToJson());
        }

        double priorWall = HtmlReport.Number(state?["wall_seconds"]) ?? 0;
        double? accuracyBefore = HtmlReport.Number(state?["accuracy_before_rl"]);
        double? greedyBefore = HtmlReport.Number(state?["greedy_accuracy_before_rl"]);
        double? sftGreedy = HtmlReport.Number(state?["sft_greedy_accuracy"]);
        Evaluation? after = null;
        double[]? mixAccuracy = null;
        string checkpointPhase = (string?)state?["phase"] ?? "";
        int checkpointStep = (int)(HtmlReport.Number(state?["step"]) ?? 0);
        double Wall() => priorWall + Stopwatch.GetElapsedTime(started).TotalSeconds;
        Action<string> saveTokenizer = path => SaveTokenizer(tokenizer, options.Model.InitFrom, path);

        if (sft is not null && !(checkpointPhase == "rl" || (checkpointPhase == "sft" && checkpointStep >= sft.Steps)))
        {
            // Multi-task SFT: a resumed run's mixture weights are those of the last metrics line kept. Under data
            // parallelism every rank composes the same batch (and measures the same mixture statistics) and trains on its share.
            using Pike.MultiTaskSource? mixSource = options.Mix is { } mixOptions && task is Pike.MixedTask mixed
                ? new Pike.MultiTaskSource(mixed, mixOptions, sft.BatchSize, Pike.MultiTaskSource.WeightsFrom(folder.ReadMetrics(), mixed)) : null;
            using var trainer = new SftTrainer(policy, codec, task, sft, generator) { BatchSource = mixSource, Parallel = parallel };
            if (checkpointPhase == "sft")
            {
                TrainingCheckpoint.Load(checkpoint!, policy, trainer.Optimizer);
                trainer.StepsDone = checkpointStep;
            }

            while (trainer.StepsDone < sft.Steps)
            {
                SftStepMetrics m = trainer.Step();
                folder.Log("sft", m);
                progress?.Report(new RunProgress("sft", m.Step, sft.Steps, $"loss {m.Loss:F4}" + (m.TestAccuracy is double a ? $", test accuracy {a:P1}" : "")));
            }

            progress?.Report(new RunProgress("eval", 0, 1, "evaluating after SFT"));
            sftGreedy = trainer.Evaluate().GreedyAccuracy;
            mixAccuracy = mixSource?.EvaluatePerTask(generator, codec, sft.EvalExamples, sft.Seed);
            if (writes)
            {
                TrainingCheckpoint.Save(Path.Combine(folder.CheckpointsPath, $"sft-{sft.Steps:D6}"), policy, trainer.Optimizer,
                    State("sft", sft.Steps, Wall(), null, null, sftGreedy), saveTokenizer, originalConfig: originalConfig);
            }
        }

        if (rl is not null)
        {
            using var trainer = new RlTrainer(policy, codec, task, rl, generator) { Parallel = parallel };
            if (checkpointPhase == "rl")
            {
                TrainingCheckpoint.Load(checkpoint!, policy, trainer.Optimizer, trainer.Reference);
                trainer.StepsDone = checkpointStep;
            }
            else if (checkpointPhase == "sft")
            {
                // SFT finished before the interruption: RL starts from its weights with a fresh optimizer.
                TrainingCheckpoint.LoadWeights(checkpoint!, policy);
            }

            if (accuracyBefore is null)
            {
                progress?.Report(new RunProgress("eval", 0, 1, "evaluating before RL"));
                Evaluation before = trainer.Evaluate();
                (accuracyBefore, greedyBefore) = (before.Accuracy, before.GreedyAccuracy);
            }

            while (trainer.StepsDone < rl.Steps)
            {
                RlStepMetrics m = trainer.Step();
                folder.Log("rl", m);
                progress?.Report(new RunProgress("rl", m.Step, rl.Steps,
                    $"reward {m.RewardMean:F3}, rollout accuracy {m.Accuracy:P1}" + (m.TestAccuracy is double a ? $", test {a:P1}" : "")));
                if (writes && rl.CheckpointEvery > 0 && m.Step % rl.CheckpointEvery == 0 && m.Step < rl.Steps)
                {
                    TrainingCheckpoint.Save(Path.Combine(folder.CheckpointsPath, $"rl-{m.Step:D6}"), policy, trainer.Optimizer,
                        State("rl", m.Step, Wall(), accuracyBefore, greedyBefore, sftGreedy), saveTokenizer, trainer.Reference, originalConfig);
                }
            }

            progress?.Report(new RunProgress("eval", 0, 1, "evaluating after RL"));
            after = trainer.Evaluate();
            if (writes)
            {
                TrainingCheckpoint.Save(Path.Combine(folder.CheckpointsPath, $"rl-{rl.Steps:D6}"), policy, trainer.Optimizer,
                    State("rl", rl.Steps, Wall(), accuracyBefore, greedyBefore, sftGreedy), saveTokenizer, trainer.Reference, originalConfig);
            }
        }

        double wall = Wall();
        var summary = new JsonObject
        {
            ["task"] = task.Name,
            ["device"] = acc.Info.ToString(),
            ["parameters"] = policy.Layout.ParameterCount,
            ["sft_steps"] = sft?.Steps ?? 0,
            ["rl_steps"] = rl?.Steps ?? 0,
            ["rl_algorithm"] = rl?.Algorithm,
            ["accuracy_metric"] = rl is { EvalSamples: > 0 } ? $"avg@{rl.EvalSamples} at temperature {rl.Temperature} on the test split" : "greedy on the test split",
            ["accuracy_before_rl"] = accuracyBefore,
            ["accuracy_after_rl"] = after?.Accuracy,
            ["accuracy_gain_points"] = accuracyBefore is double x && after?.Accuracy is double y ? Math.Round(100 * (y - x), 2) : null,
            ["greedy_accuracy_after_sft"] = sftGreedy,
            ["greedy_accuracy_before_rl"] = greedyBefore,
            ["greedy_accuracy_after_rl"] = after?.GreedyAccuracy,
            ["eval_examples"] = rl?.EvalExamples ?? sft?.EvalExamples,
            ["mix_accuracy_after_sft"] = mixAccuracy is null || task is not Pike.MixedTask mt ? null
                : new JsonObject(mt.Labels.Select((l, k) => KeyValuePair.Create(l, (JsonNode?)Math.Round(mixAccuracy[k], 6)))),
            ["wall_seconds"] = Math.Round(wall, 2),
        };
        folder.WriteSummary(summary);
        if (writes)
        {
            HtmlReport.Write(folder.ReportPath, $"Engine run: {task.Name}", folder.ReadMetrics(), summary, options.ToJson());
        }

        return new RunResult(folder.Path, accuracyBefore, after?.Accuracy, wall, folder.ReportPath, folder.SummaryPath)
        {
            GreedyAccuracyBeforeRl = greedyBefore,
            GreedyAccuracyAfterRl = after?.GreedyAccuracy,
            Rank = parallel?.Rank ?? 0,
        };
    }

    private static int PhaseOrder(string phase) => phase == "sft" ? 0 : 1;

    private static JsonObject State(string phase, int step, double wallSeconds, double? accuracyBefore, double? greedyBefore, double? sftGreedy) => new()
    {
        ["phase"] = phase,
        ["step"] = step,
        ["wall_seconds"] = wallSeconds,
        ["accuracy_before_rl"] = accuracyBefore,
        ["greedy_accuracy_before_rl"] = greedyBefore,
        ["sft_greedy_accuracy"] = sftGreedy,
    };

    private static (Transformer Model, ITokenizer Tokenizer, JsonObject? ConfigJson) CreateModel(Accelerator acc, ModelOptions options, ITask task)
    {
        if (options.InitFrom.Length > 0)
        {
            ModelFiles.RequireTokenizer(options.InitFrom);
            LoadedModel loaded = HfCheckpoint.Load(acc, options.InitFrom);
            return (loaded.Model, TokenizerLoader.Load(options.InitFrom), loaded.ConfigJson);
        }

        var tokenizer = new CharTokenizer(task.Alphabet);
        var model = new Transformer(acc, options.Build(tokenizer.VocabSize) with { EosTokenIds = [tokenizer.EosTokenId!.Value] });
        ModelInit.Initialize(model, options.InitSeed, options.InitStd);
        return (model, tokenizer, null);
    }

    /// <summary>Writes the tokenizer beside a checkpoint's weights: a character tokenizer's file, or the starting model's tokenizer files and chat template.</summary>
    private static void SaveTokenizer(ITokenizer tokenizer, string initFrom, string path)
    {
        if (tokenizer is CharTokenizer chars)
        {
            chars.Save(path);
        }
        else if (initFrom.Length > 0)
        {
            ModelFiles.CopyTokenizerFiles(initFrom, Path.GetDirectoryName(path)!);
        }
    }
}
