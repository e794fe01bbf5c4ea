using Engine.Core;
using Engine.Tools;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>Sum of squares, AdamW (with on-device clipping), the policy loss and the KL penalty: every device vs the CPU backend.</summary>
public sealed class OptimizerParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [Theory]
    [BackendDevices]
    public void Sum_of_squares_matches_the_cpu(string device)
    {
        foreach (int n in new[] { 1, 1000, 70001 })
        {
            var ops = new Operands().F("x", TestData.Uniform(n, n)).F("result", [0.75f]);
            Parity.Check(fx, device, output, $"SumOfSquares n{n}", ops, (acc, v) =>
            {
                acc.SumOfSquares(v["result"], v["x"], n);
                acc.SumOfSquares(v["result"], v["x"].Slice(0, (n + 1) / 2), (n + 1) / 2);
            }, ("result", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void AdamW_matches_the_cpu(string device)
    {
        const int n = 1003;
        foreach (var (clip, decay, step) in new[] { (0f, 0f, 1), (1f, 0.1f, 3), (50f, 0.01f, 10) })
        {
            var settings = new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, decay, step, clip);
            var ops = new Operands()
                .F("p", TestData.Uniform(1, n)).F("g", TestData.Uniform(2, n)).F("m", TestData.Uniform(3, n, 0.1f))
                .F("v", TestData.Uniform(4, n, 0.01f).Select(Math.Abs).ToArray()).F("normSq", [37f]);
            Parity.Check(fx, device, output, $"AdamW clip {clip} wd {decay} step {step}", ops, (acc, t) =>
            {
                acc.AdamW(t["p"], t["g"], t["m"], t["v"], clip > 0 ? t["normSq"] : default, settings, n);
                acc.AdamW(t["p"], t["g"], t["m"], t["v"], t["normSq"], settings with { Step = step + 1 }, n);
            }, ("p", 1e-6), ("m", 1e-6), ("v", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Policy_loss_matches_the_cpu(string device)
    {
        const int n = 613;
        var rng = new Random(5);
        float[] logp = TestData.Uniform(11, n, 3f).Select(x => -Math.Abs(x)).ToArray();
        float[] old = logp.Select(x => x + (float)((rng.NextDouble() - 0.5) * 0.6)).ToArray();
        old[0] = logp[0] - 30f; // ratio clamped
        float[] mask = TestData.Ints(12, n, 4).Select(x => x == 0 ? 0f : 1f).ToArray();
        float[] weights = mask.Select(m => m / 100f).ToArray();
        float[] logpRef = logp.Select(x => x + (float)((rng.NextDouble() - 0.5) * 2)).ToArray();
        logpRef[1] = logp[1] + 25f; // KL argument clamped
        var ops = new Operands()
            .F("dlogp", TestData.Uniform(16, n)).Zeros("dentropy", n).F("stats", TestData.Uniform(13, PolicyLossStats.Count))
            .F("klstats", TestData.Uniform(17, KlLossStats.Count)).F("hstats", TestData.Uniform(18, EntropyStats.Count))
            .F("ostats", TestData.Uniform(19, OffPolicyStats.Count))
            .F("logp", logp).F("old", old).F("adv", TestData.Uniform(14, n, 2f)).F("mask", mask).F("weights", weights)
            .F("ref", logpRef).F("entropy", TestData.Uniform(15, n, 3f).Select(Math.Abs).ToArray());
        foreach (var settings in new[] { new PolicyLossSettings(0.2f, 0.28f, 0f), new PolicyLossSettings(0.2f, 0.2f, 3f) })
        {
            Parity.Check(fx, device, output, $"PolicyLoss dual {settings.DualClip}", ops, (acc, t) =>
                acc.PolicyLoss(t["dlogp"], t["stats"], t["logp"], t["old"], t["adv"], t["mask"], t["weights"], settings, n),
                ("dlogp", 1e-6), ("stats", 1e-6));
        }

        // The KL term adds into a gradient that is already there (the surrogate's), and beta = 0 must leave it bit for bit.
        foreach (var (coef, k) in new[] { (0.05f, KlEstimator.K3), (0.1f, KlEstimator.K1), (0.1f, KlEstimator.K2), (0f, KlEstimator.K2) })
        {
            Parity.Check(fx, device, output, $"KlLoss {coef} {k}", ops, (acc, t) =>
                acc.KlLoss(t["dlogp"], t["klstats"], t["logp"], t["ref"], t["mask"], t["weights"], coef, k, n),
                ("dlogp", coef == 0 ? 0 : 1e-6), ("klstats", 1e-6));
        }

        foreach (var settings in new[]
                 {
                     new OffPolicySettings(OffPolicyWeighting.Clip, 0.2f, 0.28f, 0.1f), new OffPolicySettings(OffPolicyWeighting.Shaping, 0.2f, 0.28f, 0.1f),
                 })
        {
            Parity.Check(fx, device, output, $"OffPolicyLoss {settings.Weighting}", ops, (acc, t) =>
                acc.OffPolicyLoss(t["dlogp"], t["ostats"], t["logp"], t["old"], t["adv"], t["mask"], t["weights"], settings, n),
                ("dlogp", 1e-6), ("ostats", 1e-6));
        }

        foreach (float coef in new[] { 0f, 0.01f })
        {
            Parity.Check(fx, device, output, $"EntropyBonus {coef}", ops, (acc, t) =>
                acc.EntropyBonus(coef != 0 ? t["dentropy"] : default, t["hstats"], t["entropy"], t["mask"], t["weights"], coef, n),
                ("dentropy", 1e-6), ("hstats", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Kl_penalty_matches_the_cpu(string device)
    {
        const int n = 301;
        float[] logp = TestData.Uniform(21, n, 5f);
        float[] logpRef = TestData.Uniform(22, n, 5f);
        logpRef[0] = logp[0] + 40f;
        logpRef[1] = logp[1] - 40f;
        foreach (KlEstimator k in new[] { KlEstimator.K1, KlEstimator.K2, KlEstimator.K3 })
        {
            var ops = new Operands().Zeros("out", n).F("logp", logp).F("ref", logpRef);
            Parity.Check(fx, device, output, $"KlPenalty {k}", ops, (acc, t) => acc.KlPenalty(t["out"], t["logp"], t["ref"], k, n), ("out", 1e-6));
        }
    }
}
