using Engine.Core;
using Engine.Rl;

namespace Engine.MixedPolicy;

/// <summary>
/// Mixed-policy DAPO's off-policy term: the guide's tokens weighted by <c>rho = pi_theta / pi_guide</c> (clip or
/// shaping), with the off-policy aggregation weights (<see cref="RolloutColumn.OffPolicyWeight"/>) and mask
/// (<see cref="RolloutColumn.GuideMask"/>); the on-policy surrogate never sees these tokens.
/// </summary>
internal sealed class OffPolicyTerm(Accelerator acc, GuideOptions options, float epsLow, float epsHigh) : LossTerm(acc, OffPolicyStats.Count)
{
    private readonly OffPolicySettings settings = new(options.Weighting, epsLow, epsHigh, options.Gamma);

    public override void Apply(LossContext c) =>
        Acc.OffPolicyLoss(c.DLogProbs, Stats, c.LogProbs, c.Column(RolloutColumn.BehaviourLogp), c.Column(RolloutColumn.Advantage),
            c.Column(RolloutColumn.GuideMask), c.Column(RolloutColumn.OffPolicyWeight), settings, c.N);

    public override double Loss(double[] stats) => stats[OffPolicyStats.Loss];

    public override void Report(double[] totals, IDictionary<string, object> metrics)
    {
        double tokens = totals[OffPolicyStats.Tokens];
        metrics["importance_weight_mean"] = tokens > 0 ? totals[OffPolicyStats.RhoSum] / tokens : 0.0;
        metrics["importance_weight_max"] = totals[OffPolicyStats.RhoMax];
        metrics["importance_clip_fraction"] = tokens > 0 ? totals[OffPolicyStats.Clipped] / tokens : 0.0;
    }
}
