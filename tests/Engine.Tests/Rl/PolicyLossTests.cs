using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Rl;
using Engine.Tests.Support;

namespace Engine.Tests.Rl;

/// <summary>
/// The RL loss-term kernels (clipped surrogate, KL term, entropy bonus) composed as the trainer composes
/// them, against a plain reference of the whole loss, by finite differences, and rl-core.md's invariants.
/// </summary>
public sealed class PolicyLossTests : IDisposable
{
    private readonly CpuAccelerator acc = TestDevices.Cpu();

    public static TheoryData<float, float, float, float, int, float> Settings => new()
    {
        // eps_low, eps_high, dual clip, kl coef, kl estimator (0..2), entropy coef
        { 0.2f, 0.2f, 0f, 0f, 0, 0f },
        { 0.2f, 0.28f, 0f, 0f, 0, 0f },
        { 0.2f, 0.28f, 3f, 0f, 0, 0f },
        { 0.1f, 0.3f, 0f, 0.05f, 0, 0f },
        { 0.2f, 0.2f, 0f, 0.1f, 1, 0f },
        { 0.2f, 0.28f, 2f, 0.2f, 2, 0.01f },
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public void Loss_gradients_and_statistics_match_a_plain_reference(float epsLow, float epsHigh, float dual, float kl, int estimator, float entropyCoef)
    {
        var s = new Terms(new PolicyLossSettings(epsLow, epsHigh, dual), kl, (KlEstimator)estimator, entropyCoef);
        var input = Inputs.Random(11, 203);
        var (loss, dlogp, dent, stats) = Run(input, s);
        var reference = Reference(input, s);
        Assert.Equal(reference.Loss, loss, 5);
        Compare.Close(reference.Grad, dlogp, 1e-6, "dlogp");
        if (entropyCoef != 0)
        {
            Compare.Close(reference.EntropyGrad, dent!, 1e-6, "dentropy");
        }

        Assert.Equal(reference.Tokens, stats[PolicyLossStats.Tokens], 3);
        Assert.Equal(reference.ClipHigh, stats[PolicyLossStats.ClipHigh], 3);
        Assert.Equal(reference.ClipLow, stats[PolicyLossStats.ClipLow], 3);
        Assert.Equal(reference.RatioSum, stats[PolicyLossStats.Ratio], 2);
        Assert.True(reference.ClipHigh > 0 && reference.ClipLow > 0, "the inputs must exercise both clip regions");
    }

    [Theory]
    [MemberData(nameof(Settings))]
    public void Gradient_matches_finite_differences(float epsLow, float epsHigh, float dual, float kl, int estimator, float entropyCoef)
    {
        var s = new Terms(new PolicyLossSettings(epsLow, epsHigh, dual), kl, (KlEstimator)estimator, entropyCoef);
        var input = Inputs.Random(12, 97);
        // Keep ratios away from the clip boundaries, where the loss has kinks.
        for (int i = 0; i < input.Logp.Length; i++)
        {
            double r = Math.Exp(input.Logp[i] - input.Old[i]);
            if (Math.Abs(r - (1 - epsLow)) < 0.02 || Math.Abs(r - (1 + epsHigh)) < 0.02)
            {
                input.Logp[i] += 0.05f;
            }
        }

        var (_, dlogp, _, _) = Run(input, s);
        FiniteDifference.Check(input.Logp, dlogp, x => Reference(input with { Logp = x }, s).Loss, "dL/dlogp", h: 1e-4, tol: 2e-3);
    }

    [Fact]
    public void With_ratio_one_and_no_clipping_the_gradient_is_minus_advantage_times_weight()
    {
        var input = Inputs.Random(13, 64);
        input = input with { Logp = (float[])input.Old.Clone() };
        var (_, dlogp, _, stats) = Run(input, new Terms(new PolicyLossSettings(0.2f, 0.2f, 0), 0, KlEstimator.K3, 0));
        for (int t = 0; t < 64; t++)
        {
            Assert.Equal(-input.Adv[t] * input.Weight[t], dlogp[t], 6);
        }

        Assert.Equal(stats[PolicyLossStats.Tokens], stats[PolicyLossStats.Ratio], 4);
        Assert.Equal(0, stats[PolicyLossStats.ClipHigh]);
        Assert.Equal(0, stats[PolicyLossStats.ClipLow]);
    }

    [Fact]
    public void The_gradient_is_zero_exactly_in_the_clipped_regions()
    {
        var s = new Terms(new PolicyLossSettings(0.2f, 0.28f, 0), 0, KlEstimator.K3, 0);
        float[] ratios = [0.5f, 0.79f, 0.81f, 1f, 1.27f, 1.29f, 2f];
        foreach (float a in new[] { 1f, -1f })
        {
            foreach (float r in ratios)
            {
                var input = new Inputs([MathF.Log(r)], [0f], [a], [1f], [1f], [0f], [0f]);
                var (_, g, _, _) = Run(input, s);
                bool flat = (a > 0 && r > 1.28f) || (a < 0 && r < 0.8f);
                if (flat)
                {
                    Assert.Equal(0f, g[0]);
                }
                else
                {
                    Assert.Equal(-a * r, g[0], 5);
                }
            }
        }
    }

    [Fact]
    public void Dual_clip_bounds_the_loss_of_negative_advantages()
    {
        var s = new Terms(new PolicyLossSettings(0.2f, 0.2f, 3f), 0, KlEstimator.K3, 0);
        var input = new Inputs([MathF.Log(5f)], [0f], [-2f], [1f], [1f], [0f], [0f]);
        var (loss, g, _, stats) = Run(input, s);
        Assert.Equal(6f, loss, 5);   // min(-A r = 10, -A c = 6)
        Assert.Equal(0f, g[0]);
        Assert.Equal(1f, stats[PolicyLossStats.DualClipped]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Splitting_a_mini_batch_into_micro_batches_changes_nothing(int mode)
    {
        var aggregation = (LossAggregation)mode;
        var rng = new Random(5);
        var masks = Enumerable.Range(0, 9).Select(i => Enumerable.Range(0, 3 + rng.Next(9)).Select(_ => rng.NextDouble() < 0.85 ? 1f : 0f).ToArray()).ToList();
        float[][] weights = LossWeights.Compute(masks, aggregation, 12);
        int total = masks.Sum(m => m.Length);
        var input = Inputs.Random(14, total) with { Mask = masks.SelectMany(m => m).ToArray(), Weight = weights.SelectMany(w => w).ToArray() };
        var s = new Terms(new PolicyLossSettings(0.2f, 0.28f, 0), 0, KlEstimator.K3, 0);
        var (whole, gWhole, _, statsWhole) = Run(input, s);
        int split = masks.Take(4).Sum(m => m.Length);
        var (first, gFirst, _, statsFirst) = Run(input.Slice(0, split), s);
        var (second, gSecond, _, statsSecond) = Run(input.Slice(split, total - split), s);
        Assert.Equal(whole, first + second, 5);
        Assert.Equal(gWhole, gFirst.Concat(gSecond).ToArray());
        Assert.Equal(statsWhole[PolicyLossStats.Tokens], statsFirst[PolicyLossStats.Tokens] + statsSecond[PolicyLossStats.Tokens], 4);

        // The weights implement the mode: token-mean sums to 1 over counted tokens, seq-mean-token-mean gives
        // each non-empty sequence total weight 1/S, sum-norm gives every token 1/(S L_norm).
        double sum = weights.Sum(w => w.Sum(x => (double)x));
        int nonEmpty = masks.Count(m => m.Sum() > 0);
        double expected = aggregation switch
        {
            LossAggregation.TokenMean => 1,
            LossAggregation.SeqMeanTokenMean => 1,
            _ => masks.Sum(m => m.Sum()) / (masks.Count * 12.0),
        };
        Assert.Equal(expected, sum, 5);
        Assert.True(nonEmpty > 0);
    }

    [Fact]
    public void Kl_estimators_follow_the_formulas()
    {
        foreach (var (lp, rf) in new[] { (-1.0f, -1.5f), (-2f, -0.5f), (-0.1f, -0.1f) })
        {
            double d = rf - lp;
            Assert.Equal(-d, KlMath.Estimate(lp, rf, KlEstimator.K1).Value, 9);
            Assert.Equal(0.5 * d * d, KlMath.Estimate(lp, rf, KlEstimator.K2).Value, 9);
            Assert.Equal(Math.Exp(d) - d - 1, KlMath.Estimate(lp, rf, KlEstimator.K3).Value, 9);
            Assert.True(KlMath.Estimate(lp, rf, KlEstimator.K3).Value >= 0);
        }

        Assert.Equal(10, KlMath.Estimate(-30f, 0f, KlEstimator.K3).Value);
        using var o = acc.Allocate(3);
        using var a = acc.Put([-1f, -2f, -0.1f]);
        using var b = acc.Put([-1.5f, -0.5f, -0.1f]);
        acc.KlPenalty(o.All, a.All, b.All, KlEstimator.K2, 3);
        Assert.Equal([0.125f, 1.125f, 0f], acc.Get(o));
    }

    public void Dispose() => acc.Dispose();

    private (float Loss, float[] Dlogp, float[]? Dentropy, float[] Stats) Run(Inputs x, in Terms s)
    {
        int n = x.Logp.Length;
        using var lp = acc.Put(x.Logp);
        using var old = acc.Put(x.Old);
        using var adv = acc.Put(x.Adv);
        using var mask = acc.Put(x.Mask);
        using var w = acc.Put(x.Weight);
        using var rf = acc.Put(x.Ref);
        using var ent = acc.Put(x.Entropy);
        using var g = acc.Allocate(n);
        using var gh = acc.Allocate(n);
        using var stats = acc.Allocate(PolicyLossStats.Count);
        using var klStats = acc.Allocate(KlLossStats.Count);
        using var entropyStats = acc.Allocate(EntropyStats.Count);
        acc.PolicyLoss(g.All, stats.All, lp.All, old.All, adv.All, mask.All, w.All, s.Clip, n);
        acc.KlLoss(g.All, klStats.All, lp.All, rf.All, mask.All, w.All, s.KlCoef, s.Kl, n);
        acc.EntropyBonus(gh.All, entropyStats.All, ent.All, mask.All, w.All, s.EntropyCoef, n);
        float[] st = acc.Get(stats);
        float loss = st[PolicyLossStats.Loss] + acc.Get(klStats)[KlLossStats.Loss] + acc.Get(entropyStats)[EntropyStats.Loss];
        return (loss, acc.Get(g), acc.Get(gh), st);
    }

    private static (double Loss, double[] Grad, double[] EntropyGrad, double Tokens, double ClipHigh, double ClipLow, double RatioSum) Reference(
        Inputs x, Terms s)
    {
        int n = x.Logp.Length;
        double loss = 0, tokens = 0, high = 0, low = 0, ratios = 0;
        var grad = new double[n];
        var gh = new double[n];
        for (int t = 0; t < n; t++)
        {
            double r = Math.Exp(Math.Clamp((double)x.Logp[t] - x.Old[t], -20, 20));
            double a = x.Adv[t];
            double unclipped = -a * r, clipped = -a * Math.Clamp(r, 1 - s.Clip.EpsLow, 1 + (double)s.Clip.EpsHigh);
            double l = Math.Max(unclipped, clipped);
            double g = clipped > unclipped ? 0 : -a * r;
            if (s.Clip.DualClip > 0 && a < 0 && -a * s.Clip.DualClip < l)
            {
                l = -a * s.Clip.DualClip;
                g = 0;
            }

            double d = (double)x.Ref[t] - x.Logp[t];
            (double k, double dk) = s.Kl switch
            {
                KlEstimator.K1 => (-d, 1.0),
                KlEstimator.K2 => (0.5 * d * d, -d),
                _ => (Math.Exp(d) - d - 1, 1 - Math.Exp(d)),
            };
            l += s.KlCoef * k - s.EntropyCoef * x.Entropy[t];
            g += s.KlCoef * dk;
            loss += x.Weight[t] * l;
            grad[t] = x.Weight[t] * g;
            gh[t] = -x.Weight[t] * s.EntropyCoef;
            tokens += x.Mask[t];
            high += a > 0 && r > 1 + s.Clip.EpsHigh ? x.Mask[t] : 0;
            low += a < 0 && r < 1 - s.Clip.EpsLow ? x.Mask[t] : 0;
            ratios += x.Mask[t] * r;
        }

        return (loss, grad, gh, tokens, high, low, ratios);
    }

    /// <summary>The loss the trainer assembles for GRPO with a KL term and an entropy bonus.</summary>
    private readonly record struct Terms(PolicyLossSettings Clip, float KlCoef, KlEstimator Kl, float EntropyCoef);

    private sealed record Inputs(float[] Logp, float[] Old, float[] Adv, float[] Mask, float[] Weight, float[] Ref, float[] Entropy)
    {
        public static Inputs Random(int seed, int n)
        {
            var rng = new Random(seed);
            float[] old = Enumerable.Range(0, n).Select(_ => (float)(-rng.NextDouble() * 4)).ToArray();
            float[] logp = old.Select(o => o + (float)((rng.NextDouble() - 0.5) * 1.2)).ToArray();
            float[] mask = Enumerable.Range(0, n).Select(_ => rng.NextDouble() < 0.9 ? 1f : 0f).ToArray();
            float[] weight = mask.Select(m => m / 50f).ToArray();
            return new Inputs(logp, old, Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray(), mask, weight,
                old.Select(o => o + (float)((rng.NextDouble() - 0.5) * 0.8)).ToArray(), Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 3)).ToArray());
        }

        public Inputs Slice(int start, int count) => new(Logp[start..(start + count)], Old[start..(start + count)], Adv[start..(start + count)],
            Mask[start..(start + count)], Weight[start..(start + count)], Ref[start..(start + count)], Entropy[start..(start + count)]);
    }
}
