using Engine.Core;

namespace Engine.Rl;

/// <summary>
/// What a loss term sees of one micro-batch: the policy's log-probs and entropies at the B*T row
/// positions, the gradient buffers every term adds into, and the rollout batch's columns gathered
/// into the micro-batch's layout (on first use).
/// </summary>
internal sealed class LossContext(Accelerator acc, int n, Tensor logProbs, Tensor entropy, Tensor dLogProbs, Tensor dEntropy,
    Func<RolloutColumn, Tensor> column)
{
    public Accelerator Acc { get; } = acc;

    /// <summary>Row positions B*T.</summary>
    public int N { get; } = n;

    /// <summary>[N] log-probs of the targets under the policy being trained.</summary>
    public Tensor LogProbs { get; } = logProbs;

    /// <summary>[N] entropies of the policy's next-token distributions.</summary>
    public Tensor Entropy { get; } = entropy;

    /// <summary>[N] dL/dlogp: the first term writes it, the others add to it.</summary>
    public Tensor DLogProbs { get; } = dLogProbs;

    /// <summary>[N] dL/dentropy, written by the entropy bonus when it has a weight.</summary>
    public Tensor DEntropy { get; } = dEntropy;

    /// <summary>A rollout-batch column in the micro-batch's layout: [N].</summary>
    public Tensor Column(RolloutColumn c) => column(c);
}

/// <summary>
/// One term of the RL loss. Each adds its gradient with respect to the policy's log-probs (and
/// entropies) through a device op and keeps its statistics on the device until the mini-batch
/// ends. GRPO is [clipped surrogate, entropy bonus] plus a KL term when asked for; KDRL adds the
/// distillation term (src/Engine/Kdrl); a new method adds its own term.
/// </summary>
internal abstract class LossTerm : IDisposable
{
    private readonly DeviceBuffer stats;

    protected LossTerm(Accelerator acc, int statCount)
    {
        Acc = acc;
        stats = acc.Allocate(statCount);
    }

    protected Accelerator Acc { get; }

    /// <summary>The statistics vector this term accumulates into.</summary>
    protected Tensor Stats => stats.All;

    /// <summary>True when the term writes dL/dentropy (the head backward then takes it).</summary>
    public virtual bool WritesEntropyGradient => false;

    /// <summary>Called once per RL step after the batch's columns are filled (e.g. to set masks or a scheduled weight).</summary>
    public virtual void BeginStep(RolloutBatch batch, int step)
    {
    }

    /// <summary>Called before each mini-batch with its sequences (e.g. to upload term-specific aggregation weights).</summary>
    public virtual void BeginMiniBatch(RolloutBatch batch, IReadOnlyList<int> sequences)
    {
    }

    /// <summary>Adds the term's loss gradient for one micro-batch.</summary>
    public abstract void Apply(LossContext c);

    /// <summary>The statistics accumulated since the last call, then cleared.</summary>
    public double[] TakeStats()
    {
        var values = Acc.ToArray(stats.All);
        Acc.Zero(stats.All);
        return values.Select(x => (double)x).ToArray();
    }

    /// <summary>The term's loss in a statistics vector from <see cref="TakeStats"/>.</summary>
    public abstract double Loss(double[] stats);

    /// <summary>Adds the term's own metrics (snake_case names) from the step's summed statistics.</summary>
    public virtual void Report(double[] totals, IDictionary<string, object> metrics)
    {
    }

    public void Dispose() => stats.Dispose();
}

/// <summary>The clipped importance-weighted surrogate with advantages (rl-core.md); writes dL/dlogp first.</summary>
internal sealed class ClippedSurrogateTerm(Accelerator acc, PolicyLossSettings settings) : LossTerm(acc, PolicyLossStats.Count)
{
    public override void Apply(LossContext c) =>
        Acc.PolicyLoss(c.DLogProbs, Stats, c.LogProbs, c.Column(RolloutColumn.OldLogp), c.Column(RolloutColumn.Advantage),
            c.Column(RolloutColumn.LossMask), c.Column(RolloutColumn.Weight), settings, c.N);

    public override double Loss(double[] stats) => stats[PolicyLossStats.Loss];
}

/// <summary>
/// KL to a frozen reference in the loss (<c>beta k(logp_ref - logp)</c>), with the policy-gradient
/// terms' aggregation weights.
/// </summary>
internal sealed class ReferenceKlTerm(Accelerator acc, float coef, KlEstimator estimator) : LossTerm(acc, KlLossStats.Count)
{
    public override void Apply(LossContext c) =>
        Acc.KlLoss(c.DLogProbs, Stats, c.LogProbs, c.Column(RolloutColumn.RefLogp), c.Column(RolloutColumn.LossMask),
            c.Column(RolloutColumn.Weight), coef, estimator, c.N);

    public override double Loss(double[] stats) => stats[KlLossStats.Loss];
}

/// <summary>The entropy bonus <c>-coef H</c>; with coef 0 it only measures the entropy.</summary>
internal sealed class EntropyBonusTerm(Accelerator acc, float coef) : LossTerm(acc, EntropyStats.Count)
{
    public override bool WritesEntropyGradient => coef != 0;

    public override void Apply(LossContext c) =>
        Acc.EntropyBonus(coef != 0 ? c.DEntropy : default, Stats, c.Entropy, c.Column(RolloutColumn.LossMask), c.Column(RolloutColumn.Weight),
            coef, c.N);

    public override double Loss(double[] stats) => stats[EntropyStats.Loss];
}
