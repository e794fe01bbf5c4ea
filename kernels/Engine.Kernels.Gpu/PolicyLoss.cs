using Engine.Core;

namespace Engine.Kernels.Gpu;

// The clipped policy loss (one work-group: per-token gradients plus nine statistics reduced in a
// fixed order) and the per-token KL penalty; kernels in Kernels/PolicyLoss.h.
internal abstract partial class GpuAccelerator
{
    protected override void PolicyLossCore(Tensor dlogp, Tensor dentropy, Tensor stats, Tensor logp, Tensor logpOld, Tensor advantages,
        Tensor mask, Tensor weights, Tensor logpRef, Tensor entropy, in PolicyLossSettings settings, int n)
    {
        KernelArgs args = Args(GpuKernel.PolicyLoss).Tensor(dlogp).Tensor(dentropy).Tensor(stats).Tensor(logp).Tensor(logpOld)
            .Tensor(advantages).Tensor(mask).Tensor(weights).Tensor(logpRef).Tensor(entropy)
            .Flag(!dentropy.IsEmpty).Flag(!logpRef.IsEmpty).Flag(!entropy.IsEmpty)
            .Float(settings.EpsLow).Float(settings.EpsHigh).Float(settings.DualClip).Float(settings.KlCoef).Int((int)settings.Kl)
            .Float(settings.EntropyCoef).Int(n);
        Run(args, Wg, Wg);
    }

    protected override void KlPenaltyCore(Tensor output, Tensor logp, Tensor logpRef, KlEstimator estimator, int n) =>
        Run(Args(GpuKernel.KlPenalty).Tensor(output).Tensor(logp).Tensor(logpRef).Int((int)estimator).Int(n), n, Math.Min(Wg, 64));
}
