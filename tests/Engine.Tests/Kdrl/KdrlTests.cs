using System.Text.Json;
using Engine.Core;
using Engine.Kdrl;
using Engine.Kernels.Cpu;
using Engine.Rl;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using static Engine.Tests.Support.RlSessions;
using Xunit.Abstractions;

namespace Engine.Tests.Kdrl;

/// <summary>KDRL's invariants (methods.md §2): the distillation term, its schedule and masks, and the trainer built with it.</summary>
public sealed class KdrlTests(ITestOutputHelper output)
{
    [Fact]
    public void Beta_zero_reproduces_grpo_bit_for_bit()
    {
        var task = new SevenTask();
        var grpo = Tiny(RlOptions.Kdrl()) with { Distillation = null };
        var kdrl = Tiny(RlOptions.Kdrl()) with { Distillation = new KdOptions { Beta = 0 } };
        using LanguageModel teacher = LanguageModel.CreateForTask(task, Shape with { InitSeed = 9 });
        var (grpoMetrics, grpoWeights) = Train(task, grpo, null);
        var (kdMetrics, kdWeights) = Train(task, kdrl, teacher);
        Assert.All(kdMetrics, line => Assert.Contains("\"kd_beta\":0", line, StringComparison.Ordinal));
        Assert.Equal(grpoMetrics, kdMetrics.Select(l => Without(l, k => k.StartsWith("kd_", StringComparison.Ordinal))));
        Assert.Equal(grpoWeights, kdWeights);
    }

    [Fact]
    public void A_teacher_equal_to_the_student_gives_zero_kd_loss_and_leaves_grpo_unchanged()
    {
        var task = new SevenTask();
        var options = Tiny(RlOptions.Kdrl()) with { Steps = 1, MiniBatches = 1, Distillation = new KdOptions { Beta = 0.5f } };
        using LanguageModel twin = LanguageModel.CreateForTask(task, Shape);
        var (kdMetrics, kdWeights) = Train(task, options, twin);
        var (grpoMetrics, grpoWeights) = Train(task, options with { Distillation = null }, null);
        output.WriteLine(kdMetrics[0]);
        using JsonDocument m = JsonDocument.Parse(kdMetrics[0]);
        Assert.Equal(0.0, m.RootElement.GetProperty("kd_loss").GetDouble());
        Assert.Equal(0.0, m.RootElement.GetProperty("kd_token_reward").GetDouble());
        Assert.Equal(grpoWeights, kdWeights);
    }

    [Fact]
    public void Distillation_changes_the_update_when_the_teacher_differs()
    {
        var task = new SevenTask();
        var options = Tiny(RlOptions.Kdrl()) with { Steps = 1, Distillation = new KdOptions { Beta = 0.5f } };
        using LanguageModel teacher = LanguageModel.CreateForTask(task, Shape with { InitSeed = 9 });
        var (kd, kdWeights) = Train(task, options, teacher);
        var (_, grpoWeights) = Train(task, options with { Distillation = null }, null);
        using JsonDocument m = JsonDocument.Parse(kd[0]);
        Assert.True(m.RootElement.GetProperty("kd_loss").GetDouble() > 0, kd[0]);
        Assert.NotEqual(grpoWeights, kdWeights);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(0)]
    public void The_kd_gradient_matches_finite_differences_and_is_minus_beta_r_for_k2(int estimatorIndex)
    {
        var estimator = (KlEstimator)estimatorIndex;
        using CpuAccelerator acc = TestDevices.Cpu();
        const int n = 40;
        const float beta = 0.3f;
        float[] logp = TestData.Uniform(1, n, 2f).Select(x => x - 2.5f).ToArray();
        float[] teacher = TestData.Uniform(2, n, 2f).Select(x => x - 2.5f).ToArray();
        float[] mask = Enumerable.Range(0, n).Select(i => i % 7 == 3 ? 0f : 1f).ToArray();
        float count = mask.Sum();
        float[] weights = mask.Select(x => x / count).ToArray();
        float[] dlogp = Kd(acc, logp, teacher, mask, weights, beta, estimator).Gradient;
        if (estimator == KlEstimator.K2)
        {
            for (int t = 0; t < n; t++)
            {
                Assert.Equal(-beta * weights[t] * (teacher[t] - logp[t]), dlogp[t], 6);
            }
        }

        FiniteDifference.Check(logp, dlogp, x => Kd(acc, x, teacher, mask, weights, beta, estimator).Loss, "dKD/dlogp", h: 1e-3, tol: 2e-3);
    }

    [Fact]
    public void A_term_that_adds_nothing_leaves_the_gradient_bits_alone()
    {
        using CpuAccelerator acc = TestDevices.Cpu();
        float[] before = [-0f, 0f, 1.5f, -2.25f];
        float[] logp = [-1f, -2f, -0.5f, -3f];
        using var g = acc.Put(before);
        using var stats = acc.Allocate(KlLossStats.Count);
        using var lp = acc.Put(logp);
        using var target = acc.Put([-0.5f, -1f, -0.5f, -1f]);
        using var ones = acc.Put([1f, 1f, 1f, 1f]);
        using var zeros = acc.Put([0f, 0f, 0f, 0f]);
        acc.KlLoss(g.All, stats.All, lp.All, target.All, ones.All, ones.All, 0f, KlEstimator.K2, 4);      // beta = 0
        acc.KlLoss(g.All, stats.All, lp.All, target.All, zeros.All, zeros.All, 1f, KlEstimator.K2, 4);    // every token masked
        acc.KlLoss(g.All, stats.All, lp.All, lp.All, ones.All, ones.All, 1f, KlEstimator.K2, 4);          // student = teacher
        float[] after = acc.Get(g);
        Assert.Equal(before.Select(BitConverter.SingleToInt32Bits), after.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(0f, acc.Get(stats)[KlLossStats.Loss]);
    }

    [Fact]
    public void Annealed_beta_never_increases_and_clamps_at_beta_min()
    {
        var kd = new KdOptions { Beta = 5e-3f, Schedule = KdSchedule.Anneal, BetaMin = 1e-3f, Delta = 5e-5f };
        float previous = float.PositiveInfinity;
        for (int step = 0; step < 200; step++)
        {
            float beta = kd.BetaAt(step);
            Assert.True(beta <= previous, $"beta rose at step {step}");
            Assert.True(beta >= kd.BetaMin);
            previous = beta;
        }

        Assert.Equal(5e-3f, kd.BetaAt(0));
        Assert.Equal(5e-3f - 5e-5f * 10, kd.BetaAt(10), 6);
        Assert.Equal(1e-3f, kd.BetaAt(80), 6);
        Assert.Equal(1e-3f, kd.BetaAt(81));
        Assert.Equal(1e-3f, kd.BetaAt(199));
        Assert.Equal(5e-3f, new KdOptions { Beta = 5e-3f }.BetaAt(150));
    }

    [Fact]
    public void Each_mask_zeroes_exactly_the_tokens_it_names()
    {
        // Group 0: one accepted response; group 1: none. Sequence 3 has a filtered (mask 0) token.
        RolloutSequence Seq(int group, bool correct, float[] mask) => new()
        {
            Group = group, Prompt = [1], Response = new int[mask.Length], BehaviourLogProbs = new float[mask.Length], Mask = mask, Correct = correct,
        };
        RolloutSequence[] batch =
        [
            Seq(0, true, [1, 1]), Seq(0, false, [1, 1, 1]), Seq(1, false, [1]), Seq(1, false, [1, 0]),
        ];
        Assert.Equal([[1f, 1f], [1f, 1f, 1f], [1f], [1f, 0f]], DistillationTerm.Masks(batch, KdMask.None));
        Assert.Equal([[0f, 0f], [1f, 1f, 1f], [1f], [1f, 0f]], DistillationTerm.Masks(batch, KdMask.Response));
        Assert.Equal([[0f, 0f], [0f, 0f, 0f], [1f], [1f, 0f]], DistillationTerm.Masks(batch, KdMask.Group));
    }

    [Fact]
    public void A_teacher_with_another_vocabulary_is_refused_in_one_line()
    {
        var task = new SevenTask();
        using LanguageModel student = LanguageModel.CreateForTask(task, Shape);
        using LanguageModel other = LanguageModel.CreateForTask(new OtherAlphabetTask(), Shape);
        var e = Assert.Throws<EngineException>(() => student.StartRl(task, Tiny(RlOptions.Kdrl()), other));
        output.WriteLine(e.Message);
        Assert.Contains("vocabulary", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);

        using LanguageModel sameSize = LanguageModel.CreateForTask(new OtherAlphabetTask("9876543210="), Shape);
        var e2 = Assert.Throws<EngineException>(() => student.StartRl(task, Tiny(RlOptions.Kdrl()), sameSize));
        output.WriteLine(e2.Message);
        Assert.Contains("another tokenizer", e2.Message, StringComparison.Ordinal);

        var e3 = Assert.Throws<EngineException>(() => student.StartRl(task, Tiny(RlOptions.Kdrl())));
        Assert.Contains("teacher", e3.Message, StringComparison.Ordinal);
        var e4 = Assert.Throws<EngineException>(() => student.StartRl(task, Tiny(RlOptions.Kdrl(Path.Combine(Path.GetTempPath(), "no-such-teacher")))));
        Assert.Contains("not found", e4.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_kd_settings_are_refused_with_their_name()
    {
        Assert.Contains("kd.schedule", Assert.Throws<EngineException>(() => new KdOptions { Schedule = (KdSchedule)2 }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("kd.estimator", Assert.Throws<EngineException>(() => new KdOptions { Estimator = (Engine.Core.KlEstimator)4 }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("kd.mask", Assert.Throws<EngineException>(() => new KdOptions { Mask = (KdMask)3 }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("kd.beta", Assert.Throws<EngineException>(() => new KdOptions { Beta = -1 }.Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_cli_trains_kdrl_from_a_teacher_checkpoint_and_logs_the_kd_metrics()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"engine-kdrl-cli-{Environment.ProcessId}");
        try
        {
            string teacher = Path.Combine(dir, "teacher");
            var (code, _, err) = CliRunner.Run("sft", "--out", teacher, "--set", "sft.steps=2", "sft.eval_examples=4");
            Assert.True(code == 0, err);
            string checkpoint = Directory.GetDirectories(Path.Combine(teacher, "checkpoints"))[0];
            string run = Path.Combine(dir, "kdrl");
            (code, _, err) = CliRunner.Run("rl", "--algo", "kdrl", "--teacher", Path.Combine(checkpoint, "model"), "--out", run,
                "--set", "rl.steps=2", "rl.prompts_per_step=4", "rl.eval_every=0", "rl.eval_examples=4", "rl.eval_samples=0", "kd.beta=0.1",
                "kd.schedule=anneal", "kd.delta=0.01", "kd.beta_min=0.05", "kd.mask=response",
                $"model.init_from={Path.Combine(checkpoint, "model")}");
            Assert.True(code == 0, err);
            string[] lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Where(l => l.Contains("\"rl\"", StringComparison.Ordinal)).ToArray();
            Assert.Equal(2, lines.Length);
            Assert.Contains("\"kd_beta\":0.1", lines[0], StringComparison.Ordinal);
            Assert.Contains("\"kd_beta\":0.09", lines[1], StringComparison.Ordinal);
            Assert.Contains("\"kd\"", File.ReadAllText(Path.Combine(run, "config.json")), StringComparison.Ordinal);

            (code, _, err) = CliRunner.Run("rl", "--algo", "kdrl", "--out", Path.Combine(dir, "no-teacher"), "--set", "rl.steps=1");
            Assert.Equal(1, code);
            Assert.Contains("teacher", err, StringComparison.Ordinal);
            Assert.Single(err.Trim().Split('\n'));
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private static (float[] Gradient, double Loss) Kd(CpuAccelerator acc, float[] logp, float[] teacher, float[] mask, float[] weights, float beta,
        KlEstimator estimator)
    {
        using var g = acc.Allocate(logp.Length);
        using var stats = acc.Allocate(KlLossStats.Count);
        using var lp = acc.Put(logp);
        using var t = acc.Put(teacher);
        using var m = acc.Put(mask);
        using var w = acc.Put(weights);
        acc.KlLoss(g.All, stats.All, lp.All, t.All, m.All, w.All, beta, estimator, logp.Length);
        double loss = 0;
        for (int i = 0; i < logp.Length; i++)
        {
            loss += weights[i] * beta * KlMath.Estimate(logp[i], teacher[i], estimator).Value;
        }

        return (acc.Get(g), loss);
    }
}

/// <summary>The shipped experiment's quick version: every arm runs and summary.json has the documented shape.</summary>
public sealed class KdrlExperimentTests
{
    [Fact]
    public void The_quick_experiment_writes_every_arm_per_seed_and_a_report()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"engine-kdrl-exp-{Environment.ProcessId}");
        try
        {
            var summary = KdrlExperiment.Run(new KdrlExperimentOptions { Seeds = [3], OutDir = dir, Quick = true });
            using JsonDocument file = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "summary.json")));
            JsonElement arms = file.RootElement.GetProperty("arms");
            Assert.Equal(KdrlExperiment.Arms, arms.EnumerateObject().Select(p => p.Name));
            foreach (JsonProperty arm in arms.EnumerateObject())
            {
                double perSeed = arm.Value.GetProperty("per_seed").GetProperty("3").GetDouble();
                Assert.InRange(perSeed, 0, 1);
                Assert.Equal(perSeed, arm.Value.GetProperty("mean").GetDouble());
            }

            Assert.InRange(file.RootElement.GetProperty("teacher").GetDouble(), 0, 1);
            Assert.Equal(4, file.RootElement.GetProperty("steps").GetInt32());
            string html = File.ReadAllText(Path.Combine(dir, "report.html"));
            Assert.Contains("<svg", html, StringComparison.Ordinal);
            Assert.Contains("kdrl_anneal", html, StringComparison.Ordinal);
            Assert.Contains("KD loss", html, StringComparison.Ordinal);
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
