using Engine.Core;
using Engine.Rl;

namespace Engine.Kdrl;

/// <summary>
/// KDRL's distillation term: <c>beta_t * mean over KD tokens of k(R_t)</c> with
/// <c>R_t = logp_teacher - logp_theta</c>, on the device through the KL-term op with the teacher's
/// log-probs (the rollout batch's <see cref="RolloutColumn.TeacherLogp"/>, scored by the trainer's frozen
/// teacher). Its own aggregation: the mean over the mini-batch's KD tokens, whatever the
/// policy-gradient terms use.
/// </summary>
internal sealed class DistillationTerm(Accelerator acc, KdOptions options) : LossTerm(acc, KlLossStats.Count)
{
    private readonly KlEstimator estimator = options.KlEstimator;
    private readonly KdMask mask = options.MaskMode;
    private float[][] kdMasks = [];
    private double lossTokens;

    /// <summary>beta of the current step.</summary>
    public float Beta { get; private set; }

    /// <summary>The KD mask of every sequence of a batch: its loss mask, zeroed where the reward-guided mask says.</summary>
    public static float[][] Masks(IReadOnlyList<RolloutSequence> sequences, KdMask mode)
    {
        var groupSolved = new HashSet<int>(sequences.Where(s => s.Correct).Select(s => s.Group));
        return sequences.Select(s =>
        {
            bool distil = mode switch
            {
                KdMask.Response => !s.Correct,
                KdMask.Group => !groupSolved.Contains(s.Group),
                _ => true,
            };
            return s.Mask.Select(m => distil ? m : 0f).ToArray();
        }).ToArray();
    }

    public override void BeginStep(RolloutBatch batch, int step)
    {
        Beta = options.BetaAt(step);
        kdMasks = Masks(batch.Sequences, mask);
        lossTokens = 0;
        for (int i = 0; i < kdMasks.Length; i++)
        {
            batch.Upload(RolloutColumn.KdMask, i, kdMasks[i]);
            lossTokens += batch.Sequences[i].Mask.Sum(m => (double)m);
        }
    }

    public override void BeginMiniBatch(RolloutBatch batch, IReadOnlyList<int> sequences)
    {
        float[][] weights = LossWeights.Compute(sequences.Select(i => kdMasks[i]).ToList(), LossAggregation.TokenMean, 0);
        for (int k = 0; k < sequences.Count; k++)
        {
            batch.Upload(RolloutColumn.KdWeight, sequences[k], weights[k]);
        }
    }

    public override void Apply(LossContext c) =>
        Acc.KlLoss(c.DLogProbs, Stats, c.LogProbs, c.Column(RolloutColumn.TeacherLogp), c.Column(RolloutColumn.KdMask),
            c.Column(RolloutColumn.KdWeight), Beta, estimator, c.N);

    public override double Loss(double[] stats) => stats[KlLossStats.Loss];

    public override void Report(double[] totals, IDictionary<string, object> metrics)
    {
        double tokens = totals[KlLossStats.Tokens];
        metrics["kd_beta"] = (double)Beta;
        metrics["kd_loss"] = tokens > 0 ? totals[KlLossStats.Estimate] / tokens : 0.0;
        metrics["kd_token_reward"] = tokens > 0 ? totals[KlLossStats.LogRatio] / tokens : 0.0;
        metrics["kd_masked_share"] = lossTokens > 0 ? 1 - kdMasks.Sum(m => m.Sum(x => (double)x)) / lossTokens : 0.0;
    }
}
