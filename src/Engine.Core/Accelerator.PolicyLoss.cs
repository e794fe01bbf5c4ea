namespace Engine.Core;

/// <summary>Estimator of KL(pi || pi_ref) per token from <c>d = logp_ref - logp</c> (Schulman's k1, k2, k3).</summary>
public enum KlEstimator
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
    /// <summary><c>d = clamp(logp_ref - logp, -20, 20)</c>: the log-ratio every estimator takes (KDRL's token reward R_t).</summary>
    public static double LogRatio(float logp, float logpRef) => Math.Clamp((double)logpRef - logp, -20, 20);

    /// <summary>The estimate for <c>d = clamp(logp_ref - logp, -20, 20)</c> and its derivative with respect to logp.</summary>
    public static (double Value, double Derivative) Estimate(float logp, float logpRef, KlEstimator estimator)
    {
        double raw = (double)logpRef - logp;
        double d = LogRatio(logp, logpRef);
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

/// <summary>Settings of the clipped policy-gradient surrogate (see rl-core.md).</summary>
/// <param name="EpsLow">Lower clip: ratios below 1 - EpsLow are clipped.</param>
/// <param name="EpsHigh">Upper clip (clip-higher): ratios above 1 + EpsHigh are clipped.</param>
/// <param name="DualClip">Dual-clip constant c (&gt; 1) bounding the loss of negative advantages by -A c; 0 disables.</param>
internal readonly record struct PolicyLossSettings(float EpsLow, float EpsHigh, float DualClip);

/// <summary>Slots of the statistics vector the clipped surrogate accumulates.</summary>
internal static class PolicyLossStats
{
    /// <summary><c>sum w_t l_t</c>: the surrogate's loss.</summary>
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

    /// <summary>Tokens where the dual clip bound the loss.</summary>
    public const int DualClipped = 6;

    /// <summary>Length of the statistics vector.</summary>
    public const int Count = 7;
}

/// <summary>Slots of the statistics vector a KL term (<see cref="Accelerator.KlLoss"/>) accumulates.</summary>
internal static class KlLossStats
{
    /// <summary><c>sum w_t coef k_t</c>: the term's loss.</summary>
    public const int Loss = 0;

    /// <summary><c>sum M_t k_t</c>: the estimate summed over counted tokens.</summary>
    public const int Estimate = 1;

    /// <summary><c>sum M_t d_t</c> with <c>d = logp_target - logp</c> (KDRL's token reward R_t).</summary>
    public const int LogRatio = 2;

    /// <summary><c>sum M_t</c>: tokens counted.</summary>
    public const int Tokens = 3;

    /// <summary>Length of the statistics vector.</summary>
    public const int Count = 4;
}

/// <summary>Slots of the statistics vector the entropy bonus (<see cref="Accelerator.EntropyBonus"/>) accumulates.</summary>
internal static class EntropyStats
{
    /// <summary><c>-coef sum w_t H_t</c>: the bonus's loss.</summary>
    public const int Loss = 0;

    /// <summary><c>sum M_t H_t</c>.</summary>
    public const int Entropy = 1;

    /// <summary>Length of the statistics vector.</summary>
    public const int Count = 2;
}

/// <summary>
/// How off-policy tokens (sampled by a frozen guide) weigh the importance ratio <c>rho = pi_theta / pi_guide</c>
/// (mixed-policy DAPO's guide.weight: "clip" or "shaping" in config files and flags).
/// </summary>
public enum OffPolicyWeighting
{
    /// <summary>The decoupled clip applied to rho: <c>max(-A rho, -A clamp(rho, 1 - eps_low, 1 + eps_high))</c>.</summary>
    Clip,

    /// <summary>The shaping transform <c>f(rho) = rho / (rho + gamma)</c>: loss <c>-A f(rho)</c>, gradient kept on low-probability tokens.</summary>
    Shaping,
}

/// <summary>Settings of the off-policy term of mixed-policy DAPO.</summary>
/// <param name="Weighting">Clip or shaping.</param>
/// <param name="EpsLow">Lower clip of rho (clip mode).</param>
/// <param name="EpsHigh">Upper clip of rho (clip mode).</param>
/// <param name="Gamma">gamma of the shaping transform.</param>
internal readonly record struct OffPolicySettings(OffPolicyWeighting Weighting, float EpsLow, float EpsHigh, float Gamma);

/// <summary>Slots of the statistics vector the off-policy term (<see cref="Accelerator.OffPolicyLoss"/>) accumulates.</summary>
internal static class OffPolicyStats
{
    /// <summary><c>sum w_t l_t</c>: the term's loss.</summary>
    public const int Loss = 0;

    /// <summary><c>sum M_t</c>: off-policy tokens counted.</summary>
    public const int Tokens = 1;

    /// <summary><c>sum M_t rho_t</c>.</summary>
    public const int RhoSum = 2;

    /// <summary><c>max over counted tokens of rho_t</c> (0 when none); accumulated as a running maximum.</summary>
    public const int RhoMax = 3;

    /// <summary>Counted tokens whose rho was clipped (clip mode).</summary>
    public const int Clipped = 4;

    /// <summary>Length of the statistics vector.</summary>
    public const int Count = 5;
}

internal abstract partial class Accelerator
{
    /// <summary>
    /// The off-policy term of mixed-policy DAPO, forward and backward in one pass: per token
    /// <c>rho = exp(clamp(logp - logp_behaviour, -20, 20))</c> (log space), and either the decoupled clip applied to
    /// rho (as <see cref="PolicyLoss"/> with the guide in place of pi_old) or the shaping <c>-A rho / (rho + gamma)</c>
    /// whose gradient is <c>-A gamma rho / (rho + gamma)^2</c>. Adds <c>w dl/dlogp</c> to <paramref name="dlogp"/> (an exact
    /// zero is not added) and accumulates <see cref="OffPolicyStats"/>.
    /// </summary>
    /// <param name="dlogp">[N] gradient with respect to the log-probs (accumulated).</param>
    /// <param name="stats">[<see cref="OffPolicyStats.Count"/>] sums (and the running maximum), accumulated.</param>
    /// <param name="logp">[N] log-probs under the policy being trained.</param>
    /// <param name="logpBehaviour">[N] log-probs under the guide that sampled the tokens.</param>
    /// <param name="advantages">[N] advantage of each token.</param>
    /// <param name="mask">[N] 1 for the off-policy tokens that count.</param>
    /// <param name="weights">[N] aggregation weight of each token (0 elsewhere).</param>
    /// <param name="settings">Weighting mode and its constants.</param>
    /// <param name="n">Tokens N.</param>
    public void OffPolicyLoss(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpBehaviour, Tensor advantages, Tensor mask, Tensor weights,
        in OffPolicySettings settings, int n)
    {
        CheckPositive(n, nameof(n));
        Check(dlogp, nameof(dlogp), minLength: n);
        Check(stats, nameof(stats), minLength: OffPolicyStats.Count);
        Check(logp, nameof(logp), minLength: n);
        Check(logpBehaviour, nameof(logpBehaviour), minLength: n);
        Check(advantages, nameof(advantages), minLength: n);
        Check(mask, nameof(mask), minLength: n);
        Check(weights, nameof(weights), minLength: n);
        if (!(settings.EpsLow >= 0 && settings.EpsLow < 1) || !(settings.EpsHigh >= 0) || !(settings.Gamma > 0))
        {
            throw new ArgumentException($"off-policy settings need 0 <= eps_low < 1, eps_high >= 0 and gamma > 0 (got {settings})");
        }

        using (Profile("OffPolicyLoss"))
        {
            OffPolicyLossCore(dlogp, stats, logp, logpBehaviour, advantages, mask, weights, settings, n);
        }
    }

    /// <summary>
    /// The importance-weighted clipped policy surrogate, forward and backward in one pass. Per token:
    /// <c>r = exp(clamp(logp - logp_old, -20, 20))</c>,
    /// <c>l = max(-A r, -A clamp(r, 1 - eps_low, 1 + eps_high))</c>, with the dual clip
    /// <c>l = min(l, -A c)</c> for A &lt; 0. The loss is <c>sum_t w_t l_t</c>: the aggregation mode lives in
    /// the per-token weights w (token-mean: M / sum M over the mini-batch; seq-mean-token-mean:
    /// M / (S L_i); seq-mean-token-sum-norm: M / (S L_norm)), so splitting a mini-batch into
    /// micro-batches changes nothing when the weights use the mini-batch's totals.
    /// Writes <c>dlogp = dL/dlogp</c> (the first term of an RL loss; the other terms add to it) and
    /// accumulates the statistics (<see cref="PolicyLossStats"/>) into <paramref name="stats"/> deterministically.
    /// </summary>
    /// <param name="dlogp">[N] gradient with respect to the new log-probs (written).</param>
    /// <param name="stats">[<see cref="PolicyLossStats.Count"/>] sums, accumulated.</param>
    /// <param name="logp">[N] log-probs under the policy being trained.</param>
    /// <param name="logpOld">[N] log-probs under the policy that sampled the tokens.</param>
    /// <param name="advantages">[N] advantage of each token.</param>
    /// <param name="mask">[N] 1 for tokens that count, 0 otherwise (statistics).</param>
    /// <param name="weights">[N] aggregation weight of each token (0 where the mask is 0).</param>
    /// <param name="settings">Clip settings.</param>
    /// <param name="n">Tokens N.</param>
    public void PolicyLoss(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages, Tensor mask, Tensor weights,
        in PolicyLossSettings settings, int n)
    {
        CheckPositive(n, nameof(n));
        Check(dlogp, nameof(dlogp), minLength: n);
        Check(stats, nameof(stats), minLength: PolicyLossStats.Count);
        Check(logp, nameof(logp), minLength: n);
        Check(logpOld, nameof(logpOld), minLength: n);
        Check(advantages, nameof(advantages), minLength: n);
        Check(mask, nameof(mask), minLength: n);
        Check(weights, nameof(weights), minLength: n);
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
            PolicyLossCore(dlogp, stats, logp, logpOld, advantages, mask, weights, settings, n);
        }
    }

    /// <summary>
    /// A KL term to a frozen policy (the reference of GRPO's KL penalty, or KDRL's teacher), forward and
    /// backward in one pass: with <c>d = clamp(logp_target - logp, -20, 20)</c> and the estimator k(d),
    /// adds <c>w_t coef dk/dlogp</c> to <paramref name="dlogp"/> and accumulates
    /// <see cref="KlLossStats"/>. For k2 the added gradient is <c>-coef w_t d_t</c>: KDRL's
    /// <c>-beta R_t d logp</c>.
    /// </summary>
    /// <param name="dlogp">[N] gradient with respect to the log-probs (accumulated).</param>
    /// <param name="stats">[<see cref="KlLossStats.Count"/>] sums, accumulated.</param>
    /// <param name="logp">[N] log-probs under the policy being trained.</param>
    /// <param name="logpTarget">[N] log-probs under the frozen policy.</param>
    /// <param name="mask">[N] 1 for tokens that count, 0 otherwise (statistics).</param>
    /// <param name="weights">[N] aggregation weight of each token (0 where the term does not apply).</param>
    /// <param name="coef">Weight of the term (beta).</param>
    /// <param name="estimator">k1, k2 or k3.</param>
    /// <param name="n">Tokens N.</param>
    public void KlLoss(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpTarget, Tensor mask, Tensor weights, float coef,
        KlEstimator estimator, int n)
    {
        CheckPositive(n, nameof(n));
        Check(dlogp, nameof(dlogp), minLength: n);
        Check(stats, nameof(stats), minLength: KlLossStats.Count);
        Check(logp, nameof(logp), minLength: n);
        Check(logpTarget, nameof(logpTarget), minLength: n);
        Check(mask, nameof(mask), minLength: n);
        Check(weights, nameof(weights), minLength: n);
        using (Profile("KlLoss"))
        {
            KlLossCore(dlogp, stats, logp, logpTarget, mask, weights, coef, estimator, n);
        }
    }

    /// <summary>
    /// The entropy bonus <c>-coef sum_t w_t H_t</c>: writes <c>dentropy = -coef w</c> (when given) and
    /// accumulates <see cref="EntropyStats"/> (the entropy statistic is kept even when coef is 0).
    /// </summary>
    /// <param name="dentropy">[N] gradient with respect to the entropies (written), or empty.</param>
    /// <param name="stats">[<see cref="EntropyStats.Count"/>] sums, accumulated.</param>
    /// <param name="entropy">[N] per-token entropies.</param>
    /// <param name="mask">[N] 1 for tokens that count.</param>
    /// <param name="weights">[N] aggregation weight of each token.</param>
    /// <param name="coef">Weight of the bonus.</param>
    /// <param name="n">Tokens N.</param>
    public void EntropyBonus(Tensor dentropy, Tensor stats, Tensor entropy, Tensor mask, Tensor weights, float coef, int n)
    {
        CheckPositive(n, nameof(n));
        CheckOptional(dentropy, nameof(dentropy), minLength: n);
        Check(stats, nameof(stats), minLength: EntropyStats.Count);
        Check(entropy, nameof(entropy), minLength: n);
        Check(mask, nameof(mask), minLength: n);
        Check(weights, nameof(weights), minLength: n);
        using (Profile("EntropyBonus"))
        {
            EntropyBonusCore(dentropy, stats, entropy, mask, weights, coef, n);
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

    protected abstract void PolicyLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages, Tensor mask,
        Tensor weights, in PolicyLossSettings settings, int n);

    protected abstract void KlLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpTarget, Tensor mask, Tensor weights, float coef,
        KlEstimator estimator, int n);

    protected abstract void EntropyBonusCore(Tensor dentropy, Tensor stats, Tensor entropy, Tensor mask, Tensor weights, float coef, int n);

    protected abstract void KlPenaltyCore(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n);

    protected abstract void OffPolicyLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpBehaviour, Tensor advantages, Tensor mask,
        Tensor weights, in OffPolicySettings settings, int n);
}
