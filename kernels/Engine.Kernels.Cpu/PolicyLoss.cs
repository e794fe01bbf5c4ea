using Engine.Core;

namespace Engine.Kernels.Cpu;

// The clipped policy-gradient loss, forward and backward in one pass over the tokens. Token counts
// per step are small (thousands), so one thread in double precision is both fast enough and
// trivially deterministic.
internal sealed unsafe partial class CpuAccelerator
{
    protected override void PolicyLossCore(Tensor dlogp, Tensor dentropy, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages,
        Tensor mask, Tensor weights, Tensor logpRef, Tensor entropy, in PolicyLossSettings settings, int n)
    {
        float* g = F(dlogp), gh = F(dentropy), st = F(stats);
        float* lp = F(logp), old = F(logpOld), adv = F(advantages), m = F(mask), w = F(weights), rf = F(logpRef), h = F(entropy);
        Span<double> sums = stackalloc double[PolicyLossStats.Count];
        sums.Clear();
        for (int t = 0; t < n; t++)
        {
            var term = PolicyLossMath.Token(lp[t], old[t], adv[t], rf == null ? float.NaN : rf[t], h == null ? 0f : h[t], settings);
            double weight = w[t], counted = m[t];
            g[t] = (float)(weight * term.Gradient);
            if (gh != null)
            {
                gh[t] = (float)(weight * -settings.EntropyCoef);
            }

            sums[PolicyLossStats.Loss] += weight * term.Loss;
            sums[PolicyLossStats.Tokens] += counted;
            sums[PolicyLossStats.ClipHigh] += term.ClippedHigh ? counted : 0;
            sums[PolicyLossStats.ClipLow] += term.ClippedLow ? counted : 0;
            sums[PolicyLossStats.Ratio] += counted * term.Ratio;
            sums[PolicyLossStats.ApproxKl] += counted * ((double)old[t] - lp[t]);
            sums[PolicyLossStats.Entropy] += h == null ? 0 : counted * h[t];
            sums[PolicyLossStats.RefKl] += rf == null ? 0 : counted * term.RefKl;
            sums[PolicyLossStats.DualClipped] += term.DualClipped ? counted : 0;
        }

        for (int i = 0; i < PolicyLossStats.Count; i++)
        {
            st[i] = (float)(st[i] + sums[i]);
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
    internal readonly record struct Term(double Loss, double Gradient, double Ratio, bool ClippedHigh, bool ClippedLow, bool DualClipped, double RefKl);

    /// <summary>Loss and dloss/dlogp of one token (the entropy bonus enters the loss here, its gradient separately).</summary>
    public static Term Token(float logp, float logpOld, float advantage, float logpRef, float entropy, in PolicyLossSettings s)
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

        double refKl = 0;
        if (!float.IsNaN(logpRef))
        {
            var (value, derivative) = KlMath.Estimate(logp, logpRef, s.Kl);
            refKl = value;
            if (s.KlCoef != 0)
            {
                loss += s.KlCoef * value;
                grad += s.KlCoef * derivative;
            }
        }

        loss -= (double)s.EntropyCoef * entropy;
        return new Term(loss, grad, r, clipHigh, clipLow, dual, refKl);
    }
}
