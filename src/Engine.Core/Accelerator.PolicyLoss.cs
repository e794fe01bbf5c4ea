namespace Engine.Core;

/// <summary>Estimator of KL(pi || pi_ref) per token from <c>d = logp_ref - logp</c> (Schulman's k1, k2, k3).</summary>
internal enum KlEstimator
{
    /// <summary><c>k1 = -d</c> (unbiased, can be negative).</summary>
    K1,

    /// <summary><c>k2 = d^2 / 2</c>.</summary>
    K2,

    /// <summary><c>k3 = exp(d) - d - 1</c>, clamped to [-10, 10]; never negative.</summary>
    K3,
}

/// <summary>The per-token KL estimators, shared by every backend and by host-side reward shaping.</summary>
internal static class KlMath
{
    /// <summary>The estimate for <c>d = clamp(logp_ref - logp, -20, 20)</c> and its derivative with respect to logp.</summary>
    public static (double Value, double Derivative) Estimate(float logp, float logpRef, KlEstimator estimator)
    {
        double raw = (double)logpRef - logp;
        double d = Math.Clamp(raw, -20, 20);
        bool clamped = raw != d;
        switch (estimator)
        {
            case KlEstimator.K1:
                return (-d, clamped ? 0 : 1);
            case KlEstimator.K2:
                return (0.5 * d * d, clamped ? 0 : -d);
            default:
                double e = Math.Exp(d);
                double k3 = e - d - 1;
                return k3 > 10 ? (10, 0) : (k3, clamped ? 0 : 1 - e);
        }
    }
}

/// <summary>Settings of the clipped policy-gradient loss (see rl-core.md).</summary>
/// <param name="EpsLow">Lower clip: ratios below 1 - EpsLow are clipped.</param>
/// <param name="EpsHigh">Upper clip (clip-higher): ratios above 1 + EpsHigh are clipped.</param>
/// <param name="DualClip">Dual-clip constant c (&gt; 1) bounding the loss of negative advantages by -A c; 0 disables.</param>
/// <param name="KlCoef">Weight beta of the KL-to-reference term in the loss; 0 disables.</param>
/// <param name="Kl">Estimator of the KL term.</param>
/// <param name="EntropyCoef">Weight of the entropy bonus (<c>-coef * H_t</c> in the loss); 0 disables.</param>
internal readonly record struct PolicyLossSettings(float EpsLow, float EpsHigh, float DualClip, float KlCoef, KlEstimator Kl, float EntropyCoef);

/// <summary>Slots of the statistics vector the policy loss accumulates.</summary>
internal static class PolicyLossStats
{
    /// <summary><c>sum w_t l_t</c>: the loss.</summary>
    public const int Loss = 0;

    /// <summary><c>sum M_t</c>: tokens counted.</summary>
    public const int Tokens = 1;

    /// <summary>Tokens whose ratio was clipped above (A &gt; 0, r &gt; 1 + eps_high).</summary>
    public const int ClipHigh = 2;

    /// <summary>Tokens whose ratio was clipped below (A &lt; 0, r &lt; 1 - eps_low).</summary>
    public const int ClipLow = 3;

    /// <summary><c>sum M_t r_t</c>.</summary>
    public const int Ratio = 4;

    /// <summary><c>sum M_t (logp_old - logp_new)</c> (approximate KL to the sampling policy).</summary>
    public const int ApproxKl = 5;

    /// <summary><c>sum M_t H_t</c> (when entropies are given).</summary>
    public const int Entropy = 6;

    /// <summary><c>sum M_t k_t</c>, the KL-to-reference estimate (when reference log-probs are given).</summary>
    public const int RefKl = 7;

    /// <summary>Tokens where the dual clip bound the loss.</summary>
    public const int DualClipped = 8;

    /// <summary>Length of the statistics vector.</summary>
    public const int Count = 9;
}

internal abstract partial class Accelerator
{
    /// <summary>
    /// The importance-weighted clipped policy loss, forward and backward in one pass. Per token:
    /// <c>r = exp(clamp(logp - logp_old, -20, 20))</c>,
    /// <c>l = max(-A r, -A clamp(r, 1 - eps_low, 1 + eps_high))</c>, with the dual clip
    /// <c>l = min(l, -A c)</c> for A &lt; 0, plus <c>beta k(logp_ref - logp)</c> and
    /// <c>-coef H</c> when enabled. The loss is <c>sum_t w_t l_t</c>: the aggregation mode lives in
    /// the per-token weights w (token-mean: M / sum M over the mini-batch; seq-mean-token-mean:
    /// M / (S L_i); seq-mean-token-sum-norm: M / (S L_norm)), so splitting a mini-batch into
    /// micro-batches changes nothing when the weights use the mini-batch's totals.
    /// Writes <c>dlogp = dL/dlogp</c> and <c>dentropy = dL/dH</c>, and accumulates the statistics
    /// (<see cref="PolicyLossStats"/>) into <paramref name="stats"/> deterministically.
    /// </summary>
    /// <param name="dlogp">[N] gradient with respect to the new log-probs (written).</param>
    /// <param name="dentropy">[N] gradient with respect to the entropies (written), or empty.</param>
    /// <param name="stats">[<see cref="PolicyLossStats.Count"/>] sums, accumulated.</param>
    /// <param name="logp">[N] log-probs under the policy being trained.</param>
    /// <param name="logpOld">[N] log-probs under the policy that sampled the tokens.</param>
    /// <param name="advantages">[N] advantage of each token.</param>
    /// <param name="mask">[N] 1 for tokens that count, 0 otherwise (statistics).</param>
    /// <param name="weights">[N] aggregation weight of each token (0 where the mask is 0).</param>
    /// <param name="logpRef">[N] reference-policy log-probs, or empty (no KL term or statistic).</param>
    /// <param name="entropy">[N] per-token entropies, or empty (no bonus or statistic).</param>
    /// <param name="settings">Clip, KL and entropy settings.</param>
    /// <param name="n">Tokens N.</param>
    public void PolicyLoss(Tensor dlogp, Tensor dentropy, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages, Tensor mask,
        Tensor weights, Tensor logpRef, Tensor entropy, in PolicyLossSettings settings, int n)
    {
        CheckPositive(n, nameof(n));
        Check(dlogp, nameof(dlogp), minLength: n);
        CheckOptional(dentropy, nameof(dentropy), minLength: n);
        Check(stats, nameof(stats), minLength: PolicyLossStats.Count);
        Check(logp, nameof(logp), minLength: n);
        Check(logpOld, nameof(logpOld), minLength: n);
        Check(advantages, nameof(advantages), minLength: n);
        Check(mask, nameof(mask), minLength: n);
        Check(weights, nameof(weights), minLength: n);
        CheckOptional(logpRef, nameof(logpRef), minLength: n);
        CheckOptional(entropy, nameof(entropy), minLength: n);
        if (settings.KlCoef != 0 && logpRef.IsEmpty)
        {
            throw new ArgumentException("a KL coefficient needs reference log-probs", nameof(logpRef));
        }

        if (settings.EntropyCoef != 0 && (entropy.IsEmpty || dentropy.IsEmpty))
        {
            throw new ArgumentException("an entropy bonus needs entropies and an entropy gradient output", nameof(entropy));
        }

        if (!(settings.EpsLow >= 0 && settings.EpsLow < 1) || !(settings.EpsHigh >= 0))
        {
            throw new ArgumentException($"clip range must satisfy 0 <= eps_low < 1 and eps_high >= 0 (got {settings.EpsLow}, {settings.EpsHigh})");
        }

        if (settings.DualClip != 0 && !(settings.DualClip > 1))
        {
            throw new ArgumentException($"the dual-clip constant must exceed 1 (got {settings.DualClip})");
        }

        using (Profile("PolicyLoss"))
        {
            PolicyLossCore(dlogp, dentropy, stats, logp, logpOld, advantages, mask, weights, logpRef, entropy, settings, n);
        }
    }

    /// <summary>Per-token KL estimate <c>k(logp_ref - logp)</c> (for the KL-in-reward variant): <c>output[t]</c> written.</summary>
    public void KlPenalty(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n)
    {
        CheckPositive(n, nameof(n));
        Check(output, nameof(output), minLength: n);
        Check(logp, nameof(logp), minLength: n);
        Check(logpRef, nameof(logpRef), minLength: n);
        using (Profile("KlPenalty"))
        {
            KlPenaltyCore(output, logp, logpRef, estimator, n);
        }
    }

    protected abstract void PolicyLossCore(Tensor dlogp, Tensor dentropy, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages,
        Tensor mask, Tensor weights, Tensor logpRef, Tensor entropy, in PolicyLossSettings settings, int n);

    protected abstract void KlPenaltyCore(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n);
}
