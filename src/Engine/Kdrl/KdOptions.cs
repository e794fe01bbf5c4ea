using Engine.Core;

namespace Engine;

/// <summary>
/// KDRL (arXiv:2506.02208): knowledge distillation and RL in one objective. On the student's own
/// samples, a frozen teacher's log-probs give a token reward <c>R_t = logp_T - logp_theta</c>, and the
/// loss gains <c>beta * mean over KD tokens of k(R_t)</c> (k2 = <c>0.5 R_t^2</c> by default), whose gradient is
/// <c>-beta R_t d logp_theta</c>: reverse KL to the teacher. Set through <see cref="RlOptions.Distillation"/>
/// (config section "kd"; CLI <c>engine rl --algo kdrl --teacher DIR</c>).
/// </summary>
public sealed record KdOptions
{
    /// <summary>The teacher's checkpoint directory (same tokenizer as the student); empty when a teacher model is given through the API.</summary>
    public string Teacher { get; init; } = "";

    /// <summary>beta: the weight of the distillation term (the start value when annealed).</summary>
    public float Beta { get; init; } = 5e-3f;

    /// <summary>constant, or anneal: <c>beta_t = max(beta - delta * t, beta_min)</c> over RL steps t (the same names in config files and flags).</summary>
    public KdSchedule Schedule { get; init; } = KdSchedule.Constant;

    /// <summary>The floor of the annealed beta.</summary>
    public float BetaMin { get; init; } = 1e-3f;

    /// <summary>The annealing decrement of beta per RL step.</summary>
    public float Delta { get; init; } = 5e-5f;

    /// <summary>"k2" (0.5 R^2, default: an unbiased gradient of reverse KL), "k3" (exp(R) - R - 1) or "k1" (-R).</summary>
    public KlEstimator Estimator { get; init; } = KlEstimator.K2;

    /// <summary>
    /// Reward-guided masking of the distillation term: none; response (no KD on responses the
    /// verifier accepted); group (KD only on groups with no accepted response). The same names in config files and flags.
    /// </summary>
    public KdMask Mask { get; init; } = KdMask.None;

    /// <summary>beta at RL step <paramref name="step"/> (0-based): constant, or linearly annealed and clamped at <see cref="BetaMin"/>.</summary>
    public float BetaAt(int step) =>
        Annealed ? Math.Max(Beta - Delta * step, BetaMin) : Beta;

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeastF(Beta, 0, "kd.beta");
        OptionChecks.AtLeastF(BetaMin, 0, "kd.beta_min");
        OptionChecks.AtLeastF(Delta, 0, "kd.delta");
        if (Annealed && BetaMin > Beta)
        {
            throw new EngineException($"kd.beta_min ({BetaMin}) must not exceed kd.beta ({Beta}) when annealing");
        }

        _ = KlEstimator;
        _ = MaskMode;
    }

    private bool Annealed => Enum.IsDefined(Schedule) ? Schedule == KdSchedule.Anneal
        : throw new EngineException($"kd.schedule must be constant or anneal, got {(int)Schedule}");

    internal KlEstimator KlEstimator => Enum.IsDefined(Estimator) ? Estimator
        : throw new EngineException($"kd.estimator must be k1, k2 or k3, got {(int)Estimator}");

    internal KdMask MaskMode => Enum.IsDefined(Mask) ? Mask
        : throw new EngineException($"kd.mask must be none, response or group, got {(int)Mask}");
}

/// <summary>How KDRL's distillation weight beta moves over the RL steps.</summary>
public enum KdSchedule
{
    /// <summary>beta stays at <see cref="KdOptions.Beta"/>.</summary>
    Constant,

    /// <summary>beta falls linearly by <see cref="KdOptions.Delta"/> per RL step to <see cref="KdOptions.BetaMin"/>.</summary>
    Anneal,
}

/// <summary>Reward-guided masking of KDRL's distillation term (<see cref="KdOptions.Mask"/>).</summary>
public enum KdMask
{
    /// <summary>Distil on every response token.</summary>
    None,

    /// <summary>No distillation on responses the verifier accepted.</summary>
    Response,

    /// <summary>Distillation only on groups with no accepted response.</summary>
    Group,
}
