using System.Text.Json;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.MixedPolicy;
using Engine.Rl;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using static Engine.Tests.Support.RlSessions;
using Xunit.Abstractions;

namespace Engine.Tests.MixedPolicy;

/// <summary>Mixed-policy DAPO's invariants (methods.md §1): the off-policy term, the guide's samples and the zero-reward batch.</summary>
public sealed class MixedPolicyTests(ITestOutputHelper output)
{
    [Fact]
    public void No_guide_samples_and_no_reuse_reproduce_dapo_bit_for_bit()
    {
        var task = new SevenTask();
        using LanguageModel guide = LanguageModel.CreateForTask(task, Shape with { InitSeed = 9 });
        var (dapo, dapoWeights) = Train(task, Tiny(RlOptions.Dapo()), null);
        var (mixed, mixedWeights) = Train(task, Tiny(RlOptions.DapoMixed()) with
        {
            Algorithm = "dapo", Guidance = new GuideOptions { Samples = 0, ReuseZeroReward = false },
        }, guide: guide);
        Assert.All(mixed, line => Assert.Contains("\"offpolicy_token_share\":0", line, StringComparison.Ordinal));
        Assert.Equal(dapo, mixed.Select(WithoutMethodMetrics));
        Assert.Equal(dapoWeights, mixedWeights);
    }

    [Fact]
    public void A_guide_identical_to_the_policy_gives_importance_weights_of_exactly_one()
    {
        var task = new SevenTask();
        using LanguageModel twin = LanguageModel.CreateForTask(task, Shape);
        foreach (OffPolicyWeighting weighting in new[] { OffPolicyWeighting.Clip, OffPolicyWeighting.Shaping })
        {
            var options = Tiny(RlOptions.DapoMixed()) with { Steps = 1, MiniBatches = 1, Guidance = new GuideOptions { Samples = 3, Weight = weighting } };
            var (metrics, _) = Train(task, options, guide: twin);
            output.WriteLine(metrics[0]);
            using JsonDocument m = JsonDocument.Parse(metrics[0]);
            Assert.True(m.RootElement.GetProperty("offpolicy_token_share").GetDouble() > 0, metrics[0]);
            Assert.Equal(1.0, m.RootElement.GetProperty("importance_weight_mean").GetDouble());
            Assert.Equal(1.0, m.RootElement.GetProperty("importance_weight_max").GetDouble());
        }
    }

    [Fact]
    public void The_zero_reward_batch_only_holds_groups_the_filter_rejected_and_a_guide_solved()
    {
        RolloutSequence Seq(bool correct, RolloutSource source) => new()
        {
            Prompt = [1], Response = [2], BehaviourLogProbs = [-1f], Mask = [1f], Correct = correct, Reward = correct ? 1 : 0, Source = source,
        };
        List<RolloutSequence> Group(params bool[] correct) => correct.Select(c => Seq(c, RolloutSource.Policy)).ToList();
        List<RolloutSequence> Guide(params bool[] correct) => correct.Select(c => Seq(c, RolloutSource.Guide)).ToList();
        var options = new GuideOptions { Samples = 2, ReuseZeroReward = true };
        using var acc = TestDevices.Cpu();
        var task = new SevenTask();
        using LanguageModel lm = LanguageModel.CreateForTask(task, Shape);
        using var frozen = FrozenModel.CopyOf(lm.Model, "guide");
        using var guidance = new Guidance(frozen, ownsGuide: false, Engine.Training.TaskCodec.For(lm.Tokenizer!, lm.Model.Config.EosTokenIds),
            Tiny(RlOptions.DapoMixed()) with { Guidance = options });

        // Kept by DAPO's filter: main batch with the guide's first M samples.
        var (outcome, sequences) = guidance.Decide(Group(true, false), Guide(true, true, false), 0, keptByFilter: true);
        Assert.Equal(GroupOutcome.Kept, outcome);
        Assert.Equal(4, sequences!.Count);
        // Rejected, no on-policy success, a guide success: reused with every guide sample.
        (outcome, sequences) = guidance.Decide(Group(false, false), Guide(false, true, false), 0, keptByFilter: false);
        Assert.Equal(GroupOutcome.Reused, outcome);
        Assert.Equal(5, sequences!.Count);
        // Rejected and the guide failed too, or rejected because all were correct: dropped.
        Assert.Equal(GroupOutcome.Dropped, guidance.Decide(Group(false, false), Guide(false, false, false), 0, keptByFilter: false).Outcome);
        Assert.Equal(GroupOutcome.Dropped, guidance.Decide(Group(true, true), Guide(true, true, true), 0, keptByFilter: false).Outcome);
        // A group the filter keeps never goes to the zero-reward batch, even with no success among the guide's samples.
        Assert.Equal(GroupOutcome.Kept, guidance.Decide(Group(false, false), Guide(false, false), 0, keptByFilter: true).Outcome);
    }

    [Fact]
    public void Reuse_trains_on_zero_reward_groups_and_reports_them()
    {
        var task = new SevenTask();
        using LanguageModel guide = LanguageModel.CreateForTask(task, Shape with { InitSeed = 9 });
        var options = Tiny(RlOptions.DapoMixed()) with { Steps = 2, Guidance = new GuideOptions { Samples = 4, Weight = OffPolicyWeighting.Shaping, LambdaZero = 0.5f } };
        var (metrics, weights) = Train(task, options, guide: guide);
        var (dapo, dapoWeights) = Train(task, Tiny(RlOptions.Dapo()) with { Steps = 2 }, null);
        output.WriteLine(string.Join('\n', metrics));
        using JsonDocument m = JsonDocument.Parse(metrics[0]);
        Assert.True(m.RootElement.GetProperty("offpolicy_token_share").GetDouble() > 0);
        Assert.True(m.RootElement.TryGetProperty("groups_reused", out _));
        Assert.True(m.RootElement.GetProperty("guide_tokens_generated").GetInt64() > 0);
        Assert.NotEqual(dapoWeights, weights);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void The_off_policy_gradient_matches_finite_differences(int mode)
    {
        using CpuAccelerator acc = TestDevices.Cpu();
        var settings = new OffPolicySettings((OffPolicyWeighting)mode, 0.2f, 0.28f, 0.1f);
        const int n = 48;
        float[] behaviour = TestData.Uniform(1, n, 2f).Select(x => x - 2.5f).ToArray();
        float[] logp = behaviour.Select((b, i) => b + (float)Math.Sin(i) * 0.8f).ToArray();
        // Away from the clip boundaries, where the clipped loss has kinks.
        for (int i = 0; i < n; i++)
        {
            double r = Math.Exp(logp[i] - behaviour[i]);
            if (Math.Abs(r - 0.8) < 0.03 || Math.Abs(r - 1.28) < 0.03)
            {
                logp[i] += 0.1f;
            }
        }

        float[] adv = TestData.Uniform(2, n, 2f);
        float[] mask = Enumerable.Range(0, n).Select(i => i % 5 == 2 ? 0f : 1f).ToArray();
        float[] weights = mask.Select(x => x / 40f).ToArray();
        var (grad, _) = OffPolicy(acc, logp, behaviour, adv, mask, weights, settings);
        FiniteDifference.Check(logp, grad, x => OffPolicy(acc, x, behaviour, adv, mask, weights, settings).Loss, "dL/dlogp", h: 1e-3, tol: 2e-3);
        if (settings.Weighting == OffPolicyWeighting.Shaping)
        {
            for (int t = 0; t < n; t++)
            {
                double rho = Math.Exp((double)logp[t] - behaviour[t]);
                Assert.Equal(-adv[t] * weights[t] * 0.1 * rho / ((rho + 0.1) * (rho + 0.1)), grad[t], 6);
            }
        }
    }

    [Fact]
    public void A_guide_with_another_vocabulary_is_refused_in_one_line()
    {
        var task = new SevenTask();
        using LanguageModel student = LanguageModel.CreateForTask(task, Shape);
        using LanguageModel other = LanguageModel.CreateForTask(new OtherAlphabetTask(), Shape);
        var e = Assert.Throws<EngineException>(() => student.StartRl(task, Tiny(RlOptions.DapoMixed()), null, other));
        output.WriteLine(e.Message);
        Assert.Contains("guide", e.Message, StringComparison.Ordinal);
        Assert.Contains("vocabulary", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("guide.weight", Assert.Throws<EngineException>(() => new GuideOptions { Weight = (OffPolicyWeighting)2 }.Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_cli_runs_dapo_mixed_from_a_guide_checkpoint()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"engine-mixed-cli-{Environment.ProcessId}");
        try
        {
            var (code, _, err) = CliRunner.Run("sft", "--out", Path.Combine(dir, "guide"), "--set", "sft.steps=2", "sft.eval_examples=4");
            Assert.True(code == 0, err);
            string checkpoint = Path.Combine(Directory.GetDirectories(Path.Combine(dir, "guide", "checkpoints"))[0], "model");
            string run = Path.Combine(dir, "mixed");
            (code, _, err) = CliRunner.Run("rl", "--algo", "dapo-mixed", "--guide", checkpoint, "--out", run, "--set", "rl.steps=2",
                "rl.prompts_per_step=4", "rl.eval_every=0", "rl.eval_examples=4", "rl.eval_samples=0", "guide.samples=2", "guide.weight=shaping",
                "guide.decay=2", $"model.init_from={checkpoint}");
            Assert.True(code == 0, err);
            string[] lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Where(l => l.Contains("\"rl\"", StringComparison.Ordinal)).ToArray();
            Assert.Equal(2, lines.Length);
            Assert.Contains("\"guide_weight\":1", lines[0], StringComparison.Ordinal);
            Assert.Contains("\"guide_weight\":0.5", lines[1], StringComparison.Ordinal);
            Assert.Contains("\"guide\"", File.ReadAllText(Path.Combine(run, "config.json")), StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private static string WithoutMethodMetrics(string line) => Without(line, key => key is "offpolicy_token_share" or "guide_samples" or "guide_weight"
        or "groups_reused" or "groups_dropped" or "guide_tokens_generated" or "importance_weight_mean" or "importance_weight_max" or "importance_clip_fraction");

    private static (float[] Gradient, double Loss) OffPolicy(CpuAccelerator acc, float[] logp, float[] behaviour, float[] adv, float[] mask,
        float[] weights, OffPolicySettings settings)
    {
        using var g = acc.Allocate(logp.Length);
        using var stats = acc.Allocate(OffPolicyStats.Count);
        using var lp = acc.Put(logp);
        using var b = acc.Put(behaviour);
        using var a = acc.Put(adv);
        using var m = acc.Put(mask);
        using var w = acc.Put(weights);
        acc.OffPolicyLoss(g.All, stats.All, lp.All, b.All, a.All, m.All, w.All, settings, logp.Length);
        double loss = 0;
        for (int i = 0; i < logp.Length; i++)
        {
            double rho = Math.Exp((double)logp[i] - behaviour[i]);
            double l = settings.Weighting == OffPolicyWeighting.Shaping ? -adv[i] * rho / (rho + settings.Gamma)
                : Math.Max(-adv[i] * rho, -adv[i] * Math.Clamp(rho, 1 - settings.EpsLow, 1 + (double)settings.EpsHigh));
            loss += weights[i] * l;
        }

        return (acc.Get(g), loss);
    }
}

/// <summary>The shipped experiment's quick version: every arm runs and summary.json has the documented shape.</summary>
public sealed class MixedPolicyExperimentTests
{
    [Fact]
    public void The_quick_experiment_writes_every_arm_at_equal_tokens_and_steps()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"engine-mixed-exp-{Environment.ProcessId}");
        try
        {
            MixedPolicyExperiment.Run(new MixedPolicyExperimentOptions { Seeds = [2], OutDir = dir, Quick = true });
            using JsonDocument file = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "summary.json")));
            foreach (string section in new[] { "arms", "at_equal_steps" })
            {
                JsonElement arms = file.RootElement.GetProperty(section);
                Assert.Equal(MixedPolicyExperiment.Arms, arms.EnumerateObject().Select(p => p.Name));
                foreach (JsonProperty arm in arms.EnumerateObject())
                {
                    Assert.InRange(arm.Value.GetProperty("per_seed").GetProperty("2").GetDouble(), 0, 1);
                }
            }

            Assert.True(file.RootElement.GetProperty("budget_tokens").GetInt64() > 0);
            string html = File.ReadAllText(Path.Combine(dir, "report.html"));
            Assert.Contains("Test accuracy vs sampled tokens", html, StringComparison.Ordinal);
            Assert.Contains("guided_reuse", html, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }
}
