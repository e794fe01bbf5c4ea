using Engine.Core;

namespace Engine;

/// <summary>
/// Mixed-policy DAPO (arXiv:2507.12931), in the engine's own formulation (the paper's exact objective is
/// not public; methods.md §1): a frozen guiding policy samples M responses per prompt beside the policy's G;
/// advantages are normalised over the union of the G + M rewards; off-policy tokens are weighted by
/// <c>rho = pi_theta / pi_guide</c> (log space) through the decoupled clip or the shaping <c>rho / (rho + gamma)</c>;
/// and a group whose G on-policy rewards are all zero, which DAPO's filter drops, goes to a second batch
/// where the guide's samples supply the contrast (own token normaliser, weight <see cref="LambdaZero"/>;
/// dropped only when the guide fails too). Set through <see cref="RlOptions.Guidance"/> (config section
/// "guide"; CLI <c>engine rl --algo dapo-mixed --guide DIR</c>).
/// </summary>
public sealed record GuideOptions
{
    /// <summary>The guide's checkpoint directory (same tokenizer as the policy); empty when a guide model is given through the API.</summary>
    public string Guide { get; init; } = "";

    /// <summary>M: the guide's responses per prompt beside the policy's G (0: no guidance in the main batch).</summary>
    public int Samples { get; init; } = 4;

    /// <summary>Off-policy weighting of rho: clip (the decoupled clip) or shaping (rho / (rho + gamma)); the same names in config files and flags.</summary>
    public OffPolicyWeighting Weight { get; init; } = OffPolicyWeighting.Clip;

    /// <summary>gamma of the shaping transform.</summary>
    public float Gamma { get; init; } = 0.1f;

    /// <summary>Guidance decays linearly to 0 over this many RL steps (0: no decay).</summary>
    public int Decay { get; init; }

    /// <summary>What decays: weight (the off-policy loss weight) or samples (M, rounded); the same names in config files and flags.</summary>
    public GuideDecayTarget DecayTarget { get; init; } = GuideDecayTarget.Weight;

    /// <summary>Train on groups whose G on-policy rewards are all zero with the guide's samples as the contrast.</summary>
    public bool ReuseZeroReward { get; init; } = true;

    /// <summary>lambda_zero: the weight of the zero-reward batch's loss.</summary>
    public float LambdaZero { get; init; } = 1f;

    /// <summary>M in the main batch at RL step <paramref name="step"/> (0-based).</summary>
    public int SamplesAt(int step) => DecaysSamples ? (int)Math.Round(Samples * Remaining(step), MidpointRounding.AwayFromZero) : Samples;

    /// <summary>The off-policy loss weight at RL step <paramref name="step"/> (0-based).</summary>
    public float WeightAt(int step) => DecaysSamples ? 1f : (float)Remaining(step);

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(Samples, 0, "guide.samples");
        OptionChecks.Positive(Gamma, "guide.gamma");
        OptionChecks.AtLeast(Decay, 0, "guide.decay");
        OptionChecks.AtLeastF(LambdaZero, 0, "guide.lambda_zero");
        _ = Weighting;
        _ = DecaysSamples;
    }

    internal OffPolicyWeighting Weighting => Enum.IsDefined(Weight) ? Weight
        : throw new EngineException($"guide.weight must be clip or shaping, got {(int)Weight}");

    private bool DecaysSamples => Enum.IsDefined(DecayTarget) ? DecayTarget == GuideDecayTarget.Samples
        : throw new EngineException($"guide.decay_target must be weight or samples, got {(int)DecayTarget}");

    private double Remaining(int step) => Decay == 0 ? 1 : Math.Max(0, 1 - (double)step / Decay);
}

/// <summary>What mixed-policy DAPO's guidance decay (<see cref="GuideOptions.Decay"/>) scales down.</summary>
public enum GuideDecayTarget
{
    /// <summary>The off-policy loss weight decays; the guide keeps sampling M responses per prompt.</summary>
    Weight,

    /// <summary>M, the guide's responses per prompt, decays (rounded); their loss weight stays 1.</summary>
    Samples,
}
