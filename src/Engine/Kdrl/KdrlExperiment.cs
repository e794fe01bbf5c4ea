using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Experiments;
using Engine.Generation;
using Engine.Model;
using Engine.Rl;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Kdrl;

/// <summary>Settings of <c>engine experiment kdrl</c>.</summary>
internal sealed record KdrlExperimentOptions : ExperimentRunOptions
{
    /// <summary>beta of the KDRL arms (the annealed arm starts here).</summary>
    public float Beta { get; init; } = 0.02f;

    /// <summary>SFT steps of the student's warm start (null: the default).</summary>
    public int? StudentSftSteps { get; init; }
}

/// <summary>
/// KDRL's published comparison (methods.md §2) reproduced in shape on the built-in addition task: a
/// teacher (the student's shape trained much longer by SFT) clearly stronger than a student warm-started
/// by a short SFT; then, from the same student and at an equal number of RL steps, the arms SFT only,
/// GRPO, KD only (reverse KL to the teacher, reward ignored), KDRL, KDRL with annealed beta and KDRL
/// with response masking. Every arm's RL is the same GRPO (token-mean, no dynamic sampling, no KL to a
/// reference); the KD arms add the distillation term. Test accuracy is avg@k at temperature 1 on held-out
/// examples, per seed (student initialisation, data order and sampling).
/// </summary>
internal static class KdrlExperiment
{
    /// <summary>The arms, in report order.</summary>
    public static readonly string[] Arms = ["sft", "grpo", "kd", "kdrl", "kdrl_anneal", "kdrl_mask"];

    private sealed record Setup(TaskOptions Task, ModelOptions Student, SftOptions TeacherSft, SftOptions StudentSft, RlOptions Rl);

    private static Setup For(bool quick, float beta)
    {
        var task = new TaskOptions { Name = "addition", Seed = 1, Parameters = "min_digits=1,max_digits=2" };
        var student = new ModelOptions { Family = "gpt2", Layers = 2, Dim = 128, Heads = 4, MaxPositions = 24 };
        var teacherSft = new SftOptions { Steps = quick ? 30 : 1200, BatchSize = 64, LearningRate = 3e-3f, WarmupSteps = 20, Seed = 1000 };
        var studentSft = new SftOptions { Steps = quick ? 10 : 300, BatchSize = 64, LearningRate = 3e-3f, WarmupSteps = 20 };
        int steps = quick ? 4 : 150;
        var rl = RlOptions.Kdrl() with
        {
            Steps = steps, PromptsPerStep = quick ? 8 : 32, SamplesPerPrompt = 8, MaxNewTokens = 7, OverlongBuffer = 3, LearningRate = 5e-4f,
            WarmupSteps = 5, WeightDecay = 0f, MiniBatches = 2, EvalEvery = quick ? 2 : 25, EvalExamples = quick ? 16 : 300, EvalSamples = quick ? 2 : 8,
            Distillation = new KdOptions { Beta = beta, Schedule = KdSchedule.Constant, BetaMin = beta / 10, Delta = beta * 0.9f / Math.Max(1, steps * 2 / 3) },
        };
        return new Setup(task, student, teacherSft, studentSft, rl);
    }

    /// <summary>Runs every arm for every seed; writes summary.json and report.html into the output folder and returns the summary.</summary>
    public static JsonObject Run(KdrlExperimentOptions options, Action<string>? log = null)
    {
        long started = Stopwatch.GetTimestamp();
        Setup setup = For(options.Quick, options.Beta);
        if (options.Steps is int steps)
        {
            setup = setup with { Rl = setup.Rl with { Steps = steps, Distillation = setup.Rl.Distillation! with { Delta = options.Beta * 0.9f / Math.Max(1, steps * 2 / 3) } } };
        }

        if (options.StudentSftSteps is int sftSteps)
        {
            setup = setup with { StudentSft = setup.StudentSft with { Steps = sftSteps } };
        }

        setup.Rl.Validate();
        setup.StudentSft.Validate();
        ITask task = setup.Task.Create();
        using Accelerator acc = Backends.Registry.Open(options.Device);
        var tokenizer = new CharTokenizer(task.Alphabet);
        var results = new ExperimentResults();
        var greedy = new ExperimentResults();

        // The teacher: the student's shape, trained much longer by SFT (its own initialisation and data order).
        using Transformer teacher = WarmStart.Train(acc, setup.Student with { InitSeed = 1000 }, tokenizer, task, setup.TeacherSft, setup.Rl);
        TaskCodec codec = WarmStart.Codec(tokenizer, teacher);
        Evaluation teacherEval = WarmStart.Evaluate(teacher, codec, task, setup.Rl);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"teacher ({setup.TeacherSft.Steps} SFT steps): test avg@{setup.Rl.EvalSamples} {teacherEval.Accuracy:P1}, greedy {teacherEval.GreedyAccuracy:P1}"));
        using FrozenModel frozenTeacher = FrozenModel.CopyOf(teacher, "teacher");

        foreach (ulong seed in options.Seeds)
        {
            using Transformer student = WarmStart.Train(acc, setup.Student with { InitSeed = seed }, tokenizer, task, setup.StudentSft with { Seed = seed },
                setup.Rl);
            Evaluation start = WarmStart.Evaluate(student, codec, task, setup.Rl with { Seed = seed });
            results.Final("sft", seed, start.Accuracy);
            greedy.Final("sft", seed, start.GreedyAccuracy);
            log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"seed {seed}: student after {setup.StudentSft.Steps} SFT steps: avg@{setup.Rl.EvalSamples} {start.Accuracy:P1}, greedy {start.GreedyAccuracy:P1}"));
            foreach (string arm in Arms.Skip(1))
            {
                results.Point("test_accuracy", arm, seed, 0, start.Accuracy);
                RlOptions rl = ArmOptions(arm, setup.Rl) with { Seed = seed };
                using Transformer policy = WarmStart.CopyOf(student);
                using var trainer = new RlTrainer(policy, codec, task, rl, teacher: rl.Distillation is null ? null : frozenTeacher);
                Evaluation? last = null;
                while (trainer.StepsDone < rl.Steps)
                {
                    RlStepMetrics m = trainer.Step();
                    if (m.MethodMetrics?.TryGetValue("kd_loss", out object? kd) == true)
                    {
                        results.Point("kd_loss", arm, seed, m.Step, (double)kd);
                    }

                    results.Point("reward", arm, seed, m.Step, m.RewardMean);
                    if (m.TestAccuracy is double a)
                    {
                        results.Point("test_accuracy", arm, seed, m.Step, a);
                        greedy.Point("test_accuracy", arm, seed, m.Step, m.TestGreedyAccuracy ?? 0);
                    }
                }

                last = rl.EvalEvery > 0 && rl.Steps % rl.EvalEvery == 0 ? null : trainer.Evaluate();
                double accuracy = last?.Accuracy ?? results.LastPoint("test_accuracy", arm, seed);
                double greedyAccuracy = last?.GreedyAccuracy ?? greedy.LastPoint("test_accuracy", arm, seed);
                results.Final(arm, seed, accuracy);
                greedy.Final(arm, seed, greedyAccuracy);
                log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"seed {seed}: {arm,-12} avg@{setup.Rl.EvalSamples} {accuracy:P1}, greedy {greedyAccuracy:P1}"));
            }
        }

        double wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var summary = new JsonObject
        {
            ["arms"] = results.Arms(),
            ["greedy"] = greedy.Arms(),
            ["teacher"] = Math.Round(teacherEval.Accuracy, 6),
            ["teacher_greedy"] = Math.Round(teacherEval.GreedyAccuracy, 6),
            ["steps"] = setup.Rl.Steps,
            ["metric"] = $"test avg@{setup.Rl.EvalSamples} at temperature {setup.Rl.Temperature} on {setup.Rl.EvalExamples} held-out examples",
            ["task"] = $"{setup.Task.Name} ({setup.Task.Parameters})",
            ["student_sft_steps"] = setup.StudentSft.Steps,
            ["teacher_sft_steps"] = setup.TeacherSft.Steps,
            ["beta"] = setup.Rl.Distillation!.Beta,
            ["anneal"] = $"beta_t = max({setup.Rl.Distillation.Beta} - {setup.Rl.Distillation.Delta:G3} t, {setup.Rl.Distillation.BetaMin:G3})",
            ["seeds"] = new JsonArray(options.Seeds.Select(s => (JsonNode)s).ToArray()),
            ["quick"] = options.Quick,
            ["wall_seconds"] = Math.Round(wall, 1),
        };
        Directory.CreateDirectory(options.OutDir);
        IO.AtomicFile.WriteAllText(Path.Combine(options.OutDir, "summary.json"), summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        results.WriteReport(Path.Combine(options.OutDir, "report.html"), "KDRL: distillation and RL in one objective",
            $"Student {setup.Student.Layers}x{setup.Student.Dim} warm-started by {setup.StudentSft.Steps} SFT steps on {summary["task"]}; teacher: the same shape after " +
            $"{setup.TeacherSft.Steps} SFT steps (avg@{setup.Rl.EvalSamples} {teacherEval.Accuracy:P1}). {setup.Rl.Steps} RL steps per arm, seeds {string.Join(", ", options.Seeds)}; " +
            $"wall time {wall:F0} s.", summary,
            [("test_accuracy", $"Test accuracy (avg@{setup.Rl.EvalSamples})", "RL step"), ("kd_loss", "KD loss (mean 0.5 R^2 over KD tokens)", "RL step"),
             ("reward", "Rollout reward", "RL step")]);
        log?.Invoke("test accuracy (avg@k):\n" + results.Table("arm"));
        log?.Invoke("greedy:\n" + greedy.Table("arm"));
        return summary;
    }

    /// <summary>The RL options of an arm: GRPO, or GRPO plus the distillation term in one of its forms.</summary>
    internal static RlOptions ArmOptions(string arm, RlOptions kdrl) => arm switch
    {
        "grpo" => kdrl with { Algorithm = "grpo", Distillation = null },
        "kd" => kdrl with { Algorithm = "kd", Advantage = AdvantageEstimator.None },
        "kdrl" => kdrl,
        "kdrl_anneal" => kdrl with { Algorithm = "kdrl_anneal", Distillation = kdrl.Distillation! with { Schedule = KdSchedule.Anneal } },
        "kdrl_mask" => kdrl with { Algorithm = "kdrl_mask", Distillation = kdrl.Distillation! with { Mask = KdMask.Response } },
        _ => throw new EngineException($"unknown KDRL arm '{arm}'"),
    };
}
