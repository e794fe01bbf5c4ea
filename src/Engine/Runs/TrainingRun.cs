using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Distributed;
using Engine.Generation;
using Engine.IO;
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

    /// <summary>pass@k (a prompt counts when any of its k samples is correct) when RL started, if RL ran with evaluation samples.</summary>
    public double? PassAtKBeforeRl { get; init; }

    /// <summary>pass@k after RL, if RL ran with evaluation samples.</summary>
    public double? PassAtKAfterRl { get; init; }
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
    /// <remarks>
    /// When resuming, a non-empty <see cref="RunOptions.Device"/> of <paramref name="options"/> replaces the saved one
    /// (bit-identical continuation holds on the CPU).
    /// </remarks>
    public static RunResult Execute(RunOptions options, string runDirectory, bool resume = false, IProgress<RunProgress>? progress = null,
        DistributedMode distributed = DistributedMode.None) =>
        Run(options, null, runDirectory, resume, progress, distributed);

    /// <summary>
    /// Runs (or continues) a run on your own <paramref name="task"/> (any <see cref="ITask"/>, e.g. a
    /// <see cref="DatasetTask"/> with your reward), with the same run folder, report and resume as a
    /// built-in task; the task settings of <paramref name="options"/> are not used. When resuming, the
    /// options are read from the folder's config.json and the task must have the name the run was started with.
    /// <paramref name="distributed"/> as in the other overload.
    /// </summary>
    public static RunResult Execute(RunOptions options, ITask task, string runDirectory, bool resume = false, IProgress<RunProgress>? progress = null,
        DistributedMode distributed = DistributedMode.None)
    {
        ArgumentNullException.ThrowIfNull(task);
        return Run(options, task, runDirectory, resume, progress, distributed);
    }

    private static RunResult Run(RunOptions options, ITask? userTask, string runDirectory, bool resume, IProgress<RunProgress>? progress,
        DistributedMode distributed) =>
        distributed == DistributedMode.None
            ? Run(options, userTask, runDirectory, resume, progress, parallel: null)
            : DistributedRun.Execute(distributed, parallel => Run(options, userTask, runDirectory, resume, parallel.Rank == 0 ? progress : null, parallel));

    private static RunResult Run(RunOptions options, ITask? userTask, string runDirectory, bool resume, IProgress<RunProgress>? progress, DataParallel? parallel)
    {
        ArgumentNullException.ThrowIfNull(options);
        long started = Stopwatch.GetTimestamp();
        bool writes = parallel is not { Rank: > 0 };
        if (resume)
        {
            string configPath = Path.Combine(runDirectory, RunFolder.ConfigFile);
            if (!File.Exists(configPath))
            {
                throw new EngineException($"{runDirectory}: nothing to resume (no {RunFolder.ConfigFile})");
            }

            string device = options.Device;
            options = RunOptions.FromFile(configPath);
            options = device.Length > 0 ? options with { Device = device } : options;
            if (userTask is not null && options.Task.Name != userTask.Name)
            {
                throw new EngineException($"{runDirectory}: the run was started on task '{options.Task.Name}', not '{userTask.Name}'");
            }
        }
        else if (userTask is not null)
        {
            options = options with { Task = new TaskOptions { Name = userTask.Name } };
        }

        if (userTask is null)
        {
            options.Validate();
        }
        else
        {
            options.ValidateSettings();
        }

        ITask task = userTask ?? (options.Mix is { } mix ? Pike.MixedTask.Parse(mix.TaskSpecs, options.Task.Seed) : options.Task.Create());
        using Accelerator acc = Backends.Registry.Open(DataParallel.DeviceOfRank(options.Device.Length == 0 ? null : options.Device, parallel));
        // Where the tokenizer (and the chat template) come from: the checkpoint, a tokenizer file or folder, or none (characters).
        string tokenizerSource = options.Model.InitFrom.Length > 0 ? options.Model.InitFrom : options.Model.Tokenizer;
        string? templateDirectory = Directory.Exists(tokenizerSource) ? tokenizerSource : null;
        string templateChoice = options.Model.ChatTemplate.Length > 0 ? options.Model.ChatTemplate : templateDirectory is not null ? "auto" : "none";
        ChatTemplate? template = ChatTemplate.Load(templateChoice, templateDirectory);
        var (model, tokenizer, originalConfig) = CreateModel(acc, options.Model, task, template);
        using Transformer policy = model;
        parallel?.RequireSameRun(DataParallel.Fingerprint(options.ToJson(), policy), "settings or starting weights");
        var codec = TaskCodec.For(tokenizer, policy.Config.EosTokenIds, template);
        SafeTensorsDType saveType = ModelFiles.ParseSaveType(options.Checkpoint.SaveDtype);

        // The folder is created only once the settings, the task and the model have been read, so bad input leaves nothing behind.
        using var folder = new RunFolder(runDirectory) { ReadOnly = !writes };
        RlOptions? rl = options.Rl is { Steps: > 0 } r ? r : null;
        SftOptions? sft = options.Sft is { Steps: > 0 } s ? s : null;
        using var generator = new Generator(policy, new GeneratorOptions
        {
            MaxSlots = rl?.MaxConcurrentSequences ?? 64,
            KvBudgetBytes = (long)(rl?.KvCacheMb ?? 64) << 20,
            Sampler = rl?.SamplerMode ?? SamplerKind.Continuous,
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
        double? passBefore = HtmlReport.Number(state?["pass_at_k_before_rl"]);
        Evaluation? after = null;
        double[]? mixAccuracy = null;
        string checkpointPhase = (string?)state?["phase"] ?? "";
        int checkpointStep = (int)(HtmlReport.Number(state?["step"]) ?? 0);
        double Wall() => priorWall + Stopwatch.GetElapsedTime(started).TotalSeconds;
        Action<string> saveTokenizer = path => SaveTokenizer(tokenizer, tokenizerSource, templateChoice, template, path);
        void Save(string name, AdamWOptimizer optimizer, JsonObject state, Transformer? reference = null)
        {
            if (!writes)
            {
                return; // rank 0 alone writes checkpoints
            }

            TrainingCheckpoint.Save(Path.Combine(folder.CheckpointsPath, name), policy, optimizer, state, saveTokenizer, reference, originalConfig, saveType);
            TrainingCheckpoint.KeepLast(folder.CheckpointsPath, options.Checkpoint.KeepLast);
        }

        bool sftRan = false;
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
            Save($"sft-{sft.Steps:D6}", trainer.Optimizer, State("sft", sft.Steps, Wall(), null, null, sftGreedy));
            sftRan = true;
        }

        if (rl is not null)
        {
            if (checkpointPhase == "sft" && !sftRan)
            {
                // SFT finished before the interruption: RL starts from its weights with a fresh optimizer. They are
                // loaded before the trainer is built, because the trainer's KL reference is a copy of the policy.
                TrainingCheckpoint.LoadWeights(checkpoint!, policy);
            }

            using var trainer = new RlTrainer(policy, codec, task, rl, generator) { Parallel = parallel };
            if (checkpointPhase == "rl")
            {
                TrainingCheckpoint.Load(checkpoint!, policy, trainer.Optimizer, trainer.Reference);
                trainer.StepsDone = checkpointStep;
            }

            if (accuracyBefore is null)
            {
                progress?.Report(new RunProgress("eval", 0, 1, "evaluating before RL"));
                Evaluation before = trainer.Evaluate();
                (accuracyBefore, greedyBefore, passBefore) = (before.Accuracy, before.GreedyAccuracy, before.PassAtK);
            }

            while (trainer.StepsDone < rl.Steps)
            {
                RlStepMetrics m = trainer.Step();
                folder.Log("rl", m);
                progress?.Report(new RunProgress("rl", m.Step, rl.Steps,
                    $"reward {m.RewardMean:F3}, rollout accuracy {m.Accuracy:P1}" + (m.TestAccuracy is double a ? $", test {a:P1}" : "")));
                if (rl.CheckpointEvery > 0 && m.Step % rl.CheckpointEvery == 0 && m.Step < rl.Steps)
                {
                    Save($"rl-{m.Step:D6}", trainer.Optimizer, State("rl", m.Step, Wall(), accuracyBefore, greedyBefore, sftGreedy, passBefore), trainer.Reference);
                }
            }

            progress?.Report(new RunProgress("eval", 0, 1, "evaluating after RL"));
            after = trainer.Evaluate();
            Save($"rl-{rl.Steps:D6}", trainer.Optimizer, State("rl", rl.Steps, Wall(), accuracyBefore, greedyBefore, sftGreedy, passBefore), trainer.Reference);
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
            ["pass_at_k_metric"] = rl is { EvalSamples: > 0 } ? $"pass@{rl.EvalSamples} at temperature {rl.Temperature} on the test split" : null,
            ["pass_at_k_before_rl"] = passBefore,
            ["pass_at_k_after_rl"] = after?.PassAtK,
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
        if (task is DatasetTask dataset)
        {
            summary["dataset"] = new JsonObject
            {
                ["train_examples"] = dataset.TrainCount, ["eval_examples"] = dataset.EvalCount, ["skipped_rows"] = dataset.SkippedRows,
                ["reward"] = options.Task.Reward.Length > 0 ? options.Task.Reward : "exact",
            };
        }

        summary["chat_template"] = template?.Name ?? "none";
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
            PassAtKBeforeRl = passBefore,
            PassAtKAfterRl = after?.PassAtK,
        };
    }

    private static int PhaseOrder(string phase) => phase == "sft" ? 0 : 1;

    private static JsonObject State(string phase, int step, double wallSeconds, double? accuracyBefore, double? greedyBefore, double? sftGreedy,
        double? passBefore = null) => new()
    {
        ["pass_at_k_before_rl"] = passBefore,
        ["phase"] = phase,
        ["step"] = step,
        ["wall_seconds"] = wallSeconds,
        ["accuracy_before_rl"] = accuracyBefore,
        ["greedy_accuracy_before_rl"] = greedyBefore,
        ["sft_greedy_accuracy"] = sftGreedy,
    };

    private static (Transformer Model, ITokenizer Tokenizer, JsonObject? ConfigJson) CreateModel(Accelerator acc, ModelOptions options, ITask task,
        ChatTemplate? template)
    {
        if (options.InitFrom.Length > 0)
        {
            ModelFiles.RequireTokenizer(options.InitFrom);
            LoadedModel loaded = HfCheckpoint.Load(acc, options.InitFrom);
            return (loaded.Model, TokenizerLoader.Load(options.InitFrom), loaded.ConfigJson);
        }

        ITokenizer tokenizer = options.Tokenizer.Length > 0 ? TokenizerLoader.Load(options.Tokenizer) : new CharTokenizer(task.Alphabet);
        // A new model stops where the codec stops (the template's end of turn and the tokenizer's EOS), so a reloaded checkpoint does too.
        IReadOnlyList<int> eos = TaskCodec.For(tokenizer, [], template).StopIds;
        var model = new Transformer(acc, options.Build(tokenizer.VocabSize) with { EosTokenIds = [.. eos] });
        ModelInit.Initialize(model, options.InitSeed, options.InitStd);
        return (model, tokenizer, null);
    }

    /// <summary>
    /// Writes the tokenizer beside a checkpoint's weights: a character tokenizer's file, or the starting model's
    /// tokenizer files and chat template; a Jinja template file the run was given goes in as chat_template.jinja.
    /// </summary>
    private static void SaveTokenizer(ITokenizer tokenizer, string source, string templateChoice, ChatTemplate? template, string path)
    {
        string directory = Path.GetDirectoryName(path)!;
        if (tokenizer is CharTokenizer chars)
        {
            chars.Save(path);
        }
        else if (Directory.Exists(source))
        {
            ModelFiles.CopyTokenizerFiles(source, directory);
        }
        else if (File.Exists(source))
        {
            File.Copy(source, path, overwrite: true);
        }

        // The template the run trained with goes into the checkpoint, so a reloaded model prompts the same way.
        string jinja = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(templateChoice) && !Path.GetExtension(templateChoice).Equals(".json", StringComparison.OrdinalIgnoreCase))
        {
            File.Copy(templateChoice, jinja, overwrite: true);
        }
        else if (template is not null && templateChoice != "auto" && ChatTemplate.JinjaText(template.Name) is string text)
        {
            File.WriteAllText(jinja, text);
        }
    }
}
