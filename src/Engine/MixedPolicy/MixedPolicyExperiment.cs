using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Experiments;
using Engine.Model;
using Engine.Rl;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.MixedPolicy;

/// <summary>Settings of <c>engine experiment mixed-policy</c>.</summary>
internal sealed record MixedPolicyExperimentOptions : ExperimentRunOptions
{
    /// <summary>The guided arms' off-policy weighting: clip or shaping.</summary>
    public OffPolicyWeighting Weight { get; init; } = OffPolicyWeighting.Clip;
}

/// <summary>
/// Mixed-policy DAPO's claim in shape (methods.md §1) on the built-in addition task: a policy warm-started by a
/// short SFT (weak) and a guide trained much longer by SFT (strong); arms DAPO, DAPO + guidance and DAPO + guidance +
/// zero-reward reuse, compared at an equal budget of sampled tokens (the guide's samples count against it: the budget
/// is what DAPO sampled in its steps, and each guided arm is evaluated when its own sampled tokens reach it) and at an
/// equal number of steps.
/// </summary>
internal static class MixedPolicyExperiment
{
    /// <summary>The arms, in report order.</summary>
    public static readonly string[] Arms = ["dapo", "guided", "guided_reuse"];

    /// <summary>Runs every arm for every seed; writes summary.json and report.html and returns the summary.</summary>
    public static JsonObject Run(MixedPolicyExperimentOptions options, Action<string>? log = null)
    {
        long started = Stopwatch.GetTimestamp();
        bool quick = options.Quick;
        var taskOptions = new TaskOptions { Name = "addition", Seed = 1, Parameters = "min_digits=1,max_digits=2" };
        var shape = new ModelOptions { Family = "gpt2", Layers = 2, Dim = 128, Heads = 4, MaxPositions = 24 };
        var guideSft = new SftOptions { Steps = quick ? 30 : 1200, BatchSize = 64, LearningRate = 3e-3f, WarmupSteps = 20, Seed = 1000 };
        var studentSft = new SftOptions { Steps = quick ? 10 : 300, BatchSize = 64, LearningRate = 3e-3f, WarmupSteps = 20 };
        int steps = options.Steps ?? (quick ? 4 : 100);
        int evalEvery = quick ? 2 : 20;
        RlOptions dapo = RlOptions.Dapo() with
        {
            Steps = steps, PromptsPerStep = quick ? 8 : 32, SamplesPerPrompt = 8, MaxNewTokens = 7, OverlongBuffer = 3, LearningRate = 5e-4f,
            WarmupSteps = 5, WeightDecay = 0f, MiniBatches = 2, EvalEvery = 0, EvalExamples = quick ? 16 : 300, EvalSamples = quick ? 2 : 8,
        };
        dapo.Validate();
        var guideOptions = new GuideOptions { Samples = 4, Weight = options.Weight, ReuseZeroReward = false };
        guideOptions.Validate();
        ITask task = taskOptions.Create();
        using Accelerator acc = Backends.Registry.Open(options.Device);
        var tokenizer = new CharTokenizer(task.Alphabet);
        using Transformer guide = WarmStart.Train(acc, shape with { InitSeed = 1000 }, tokenizer, task, guideSft, dapo);
        TaskCodec codec = WarmStart.Codec(tokenizer, guide);
        Evaluation guideEval = WarmStart.Evaluate(guide, codec, task, dapo);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"guide ({guideSft.Steps} SFT steps): avg@{dapo.EvalSamples} {guideEval.Accuracy:P1}, greedy {guideEval.GreedyAccuracy:P1}"));
        using FrozenModel frozenGuide = FrozenModel.CopyOf(guide, "guide");
        var atTokens = new ExperimentResults();
        var atSteps = new ExperimentResults();
        var budgets = new JsonObject();
        foreach (ulong seed in options.Seeds)
        {
            using Transformer student = WarmStart.Train(acc, shape with { InitSeed = seed }, tokenizer, task, studentSft with { Seed = seed }, dapo);
            Evaluation start = WarmStart.Evaluate(student, codec, task, dapo with { Seed = seed });
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"seed {seed}: policy after {studentSft.Steps} SFT steps: avg@{dapo.EvalSamples} {start.Accuracy:P1}"));
            long budget = 0;
            foreach (string arm in Arms)
            {
                RlOptions rl = arm switch
                {
                    "dapo" => dapo,
                    "guided" => dapo with { Algorithm = "dapo-mixed", Guidance = guideOptions },
                    _ => dapo with { Algorithm = "dapo-mixed", Guidance = guideOptions with { ReuseZeroReward = true } },
                } with { Seed = seed };
                using Transformer policy = WarmStart.CopyOf(student);
                using var trainer = new RlTrainer(policy, codec, task, rl, guide: rl.Guidance is null ? null : frozenGuide);
                long sampled = 0;
                double? accuracyAtBudget = null;
                atTokens.Point("accuracy_vs_steps", arm, seed, 0, start.Accuracy);
                atTokens.Point("accuracy_vs_tokens", arm, seed, 0, start.Accuracy);
                while (trainer.StepsDone < rl.Steps)
                {
                    RlStepMetrics m = trainer.Step();
                    sampled += m.TokensGenerated + (m.MethodMetrics?.TryGetValue("guide_tokens_generated", out object? g) == true ? (long)g : 0);
                    bool budgetReached = arm != "dapo" && accuracyAtBudget is null && sampled >= budget;
                    if (m.Step % evalEvery == 0 || m.Step == rl.Steps || budgetReached)
                    {
                        double accuracy = trainer.Evaluate().Accuracy;
                        atTokens.Point("accuracy_vs_steps", arm, seed, m.Step, accuracy);
                        atTokens.Point("accuracy_vs_tokens", arm, seed, sampled, accuracy);
                        if (budgetReached)
                        {
                            accuracyAtBudget = accuracy;
                        }

                        if (m.Step == rl.Steps)
                        {
                            atSteps.Final(arm, seed, accuracy);
                        }
                    }
                }

                if (arm == "dapo")
                {
                    budget = sampled;
                    accuracyAtBudget = atSteps.FinalOf(arm, seed);
                    budgets[seed.ToString(CultureInfo.InvariantCulture)] = budget;
                }

                // A guided arm that never reached the budget in its steps is compared at its last step (it sampled less).
                atTokens.Final(arm, seed, accuracyAtBudget ?? atSteps.FinalOf(arm, seed));
                log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                    $"seed {seed}: {arm,-13} at equal tokens {atTokens.FinalOf(arm, seed):P1}, at {rl.Steps} steps {atSteps.FinalOf(arm, seed):P1} ({sampled} tokens sampled)"));
            }
        }

        double wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var summary = new JsonObject
        {
            ["arms"] = atTokens.Arms(),
            ["at_equal_steps"] = atSteps.Arms(),
            ["budget_tokens"] = budgets.Count > 0 ? (long)Math.Round(budgets.Select(b => (double)(long)b.Value!).Average()) : 0,
            ["budget_tokens_per_seed"] = budgets,
            ["guide"] = Math.Round(guideEval.Accuracy, 6),
            ["steps"] = steps,
            ["guide_samples"] = guideOptions.Samples,
            ["guide_weight"] = Config.OptionsBinder.Name(guideOptions.Weight),
            ["metric"] = $"test avg@{dapo.EvalSamples} at temperature {dapo.Temperature} on {dapo.EvalExamples} held-out examples",
            ["seeds"] = new JsonArray(options.Seeds.Select(s => (JsonNode)s).ToArray()),
            ["quick"] = quick,
            ["wall_seconds"] = Math.Round(wall, 1),
        };
        Directory.CreateDirectory(options.OutDir);
        IO.AtomicFile.WriteAllText(Path.Combine(options.OutDir, "summary.json"), summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        atTokens.WriteReport(Path.Combine(options.OutDir, "report.html"), "Mixed-policy DAPO: guidance and zero-reward reuse",
            $"Policy {shape.Layers}x{shape.Dim} warm-started by {studentSft.Steps} SFT steps on addition; guide: the same shape after {guideSft.Steps} SFT steps " +
            $"(avg@{dapo.EvalSamples} {guideEval.Accuracy:P1}), M = {guideOptions.Samples} guide samples per prompt beside G = {dapo.SamplesPerPrompt}. Summary 'arms': " +
            $"accuracy at DAPO's budget of sampled tokens; 'at_equal_steps': after {steps} steps. Wall time {wall:F0} s.", summary,
            [("accuracy_vs_steps", "Test accuracy vs RL steps", "RL step"), ("accuracy_vs_tokens", "Test accuracy vs sampled tokens", "tokens sampled (policy + guide)")]);
        log?.Invoke("at an equal budget of sampled tokens:\n" + atTokens.Table("arm"));
        log?.Invoke($"at {steps} steps:\n" + atSteps.Table("arm"));
        return summary;
    }
}
