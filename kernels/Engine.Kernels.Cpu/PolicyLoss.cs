using Engine.Core;

namespace Engine.Kernels.Cpu;

// The clipped policy-gradient loss, forward and backward in one pass over the tokens. Token counts
// per step are small (thousands), so one thread in double precision is both fast enough and
// trivially deterministic.
internal sealed unsafe partial class CpuAccelerator
{
    protected override void PolicyLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages, Tensor mask,
        Tensor weights, in PolicyLossSettings settings, int n)
    {
        float* g = F(dlogp), st = F(stats);
        float* lp = F(logp), old = F(logpOld), adv = F(advantages), m = F(mask), w = F(weights);
        Span<double> sums = stackalloc double[PolicyLossStats.Count];
        sums.Clear();
        for (int t = 0; t < n; t++)
        {
            var term = PolicyLossMath.Token(lp[t], old[t], adv[t], settings);
            double weight = w[t], counted = m[t];
            g[t] = (float)(weight * term.Gradient);
            sums[PolicyLossStats.Loss] += weight * term.Loss;
            sums[PolicyLossStats.Tokens] += counted;
            sums[PolicyLossStats.ClipHigh] += term.ClippedHigh ? counted : 0;
            sums[PolicyLossStats.ClipLow] += term.ClippedLow ? counted : 0;
            sums[PolicyLossStats.Ratio] += counted * term.Ratio;
            sums[PolicyLossStats.ApproxKl] += counted * ((double)old[t] - lp[t]);
            sums[PolicyLossStats.DualClipped] += term.DualClipped ? counted : 0;
        }

        Accumulate(st, sums);
    }

    protected override void KlLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpTarget, Tensor mask, Tensor weights, float coef,
        KlEstimator estimator, int n)
    {
        float* g = F(dlogp), st = F(stats), lp = F(logp), target = F(logpTarget), m = F(mask), w = F(weights);
        Span<double> sums = stackalloc double[KlLossStats.Count];
        sums.Clear();
        for (int t = 0; t < n; t++)
        {
            var (value, derivative) = KlMath.Estimate(lp[t], target[t], estimator);
            double weight = w[t], counted = m[t];
            double add = weight * coef * derivative;
            if (add != 0)
            {
                // Adding an exact zero is skipped so a term that contributes nothing (beta = 0, a masked
                // token) leaves the other terms' gradient bits alone, the sign of a zero included.
                g[t] = (float)(g[t] + add);
            }

            sums[KlLossStats.Loss] += weight * coef * value;
            sums[KlLossStats.Estimate] += counted * value;
            sums[KlLossStats.LogRatio] += counted * KlMath.LogRatio(lp[t], target[t]);
            sums[KlLossStats.Tokens] += counted;
        }

        Accumulate(st, sums);
    }

    protected override void EntropyBonusCore(Tensor dentropy, Tensor stats, Tensor entropy, Tensor mask, Tensor weights, float coef, int n)
    {
        float* gh = F(dentropy), st = F(stats), h = F(entropy), m = F(mask), w = F(weights);
        Span<double> sums = stackalloc double[EntropyStats.Count];
        sums.Clear();
        for (int t = 0; t < n; t++)
        {
            double weight = w[t];
            if (gh != null)
            {
                gh[t] = (float)(weight * -coef);
            }

            sums[EntropyStats.Loss] -= weight * coef * h[t];
            sums[EntropyStats.Entropy] += m[t] * (double)h[t];
        }

        Accumulate(st, sums);
    }

    /// <summary>Adds the double-precision sums to the float statistics vector.</summary>
    private static void Accumulate(float* stats, ReadOnlySpan<double> sums)
    {
        for (int i = 0; i < sums.Length; i++)
        {
            stats[i] = (float)(stats[i] + sums[i]);
        }
    }

    protected override void KlPenaltyCore(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n)
    {
        float* o = F(output), lp = F(logp), rf = F(logpRef);
        for (int t = 0; t < n; t++)
        {
            o[t] = (float)KlMath.Estimate(lp[t], rf[t], estimator).Value;
        }
    }
}

/// <summary>Per-token formulas of the policy loss (rl-core.md), in double precision.</summary>
internal static class PolicyLossMath
{
    /// <summary>One token's contribution before weighting.</summary>
    internal readonly record struct Term(double Loss, double Gradient, double Ratio, bool ClippedHigh, bool ClippedLow, bool DualClipped);

    /// <summary>Loss and dloss/dlogp of one token.</summary>
    public static Term Token(float logp, float logpOld, float advantage, in PolicyLossSettings s)
    {
        double logRatio = (double)logp - logpOld;
        bool ratioClamped = logRatio < -20 || logRatio > 20;
        double r = Math.Exp(Math.Clamp(logRatio, -20, 20));
        double a = advantage;
        double surr1 = -a * r;
        double rc = Math.Clamp(r, 1 - (double)s.EpsLow, 1 + (double)s.EpsHigh);
        double surr2 = -a * rc;
        bool clipHigh = a > 0 && r > 1 + (double)s.EpsHigh;
        bool clipLow = a < 0 && r < 1 - (double)s.EpsLow;
        double loss = Math.Max(surr1, surr2);
        double grad = clipHigh || clipLow || ratioClamped ? 0 : -a * r;
        bool dual = false;
        if (s.DualClip > 0 && a < 0 && -a * s.DualClip < loss)
        {
            loss = -a * s.DualClip;
            grad = 0;
            dual = true;
        }

        return new Term(loss, grad, r, clipHigh, clipLow, dual);
    }
}
