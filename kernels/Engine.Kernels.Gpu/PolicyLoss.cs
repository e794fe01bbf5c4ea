using Engine.Core;

namespace Engine.Kernels.Gpu;

// The RL loss terms (each one work-group: per-token gradients plus statistics reduced in a fixed
// order) and the per-token KL penalty; kernels in Kernels/PolicyLoss.h.
internal abstract partial class GpuAccelerator
{
    protected override void PolicyLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages, Tensor mask,
        Tensor weights, in PolicyLossSettings settings, int n)
    {
        KernelArgs args = Args(GpuKernel.PolicyLoss).Tensor(dlogp).Tensor(stats).Tensor(logp).Tensor(logpOld).Tensor(advantages)
            .Tensor(mask).Tensor(weights).Float(settings.EpsLow).Float(settings.EpsHigh).Float(settings.DualClip).Int(n);
        Run(args, Wg, Wg);
    }

    protected override void KlLossCore(Tensor dlogp, Tensor stats, Tensor logp, Tensor logpTarget, Tensor mask, Tensor weights, float coef,
        KlEstimator estimator, int n) =>
        Run(Args(GpuKernel.KlLoss).Tensor(dlogp).Tensor(stats).Tensor(logp).Tensor(logpTarget).Tensor(mask).Tensor(weights)
            .Float(coef).Int((int)estimator).Int(n), Wg, Wg);

    protected override void EntropyBonusCore(Tensor dentropy, Tensor stats, Tensor entropy, Tensor mask, Tensor weights, float coef, int n) =>
        Run(Args(GpuKernel.EntropyBonus).Tensor(dentropy).Tensor(stats).Tensor(entropy).Tensor(mask).Tensor(weights)
            .Flag(!dentropy.IsEmpty).Float(coef).Int(n), Wg, Wg);

    protected override void KlPenaltyCore(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n) =>
        Run(Args(GpuKernel.KlPenalty).Tensor(output).Tensor(logp).Tensor(logpRef).Int((int)estimator).Int(n), n, Math.Min(Wg, 64));
}
