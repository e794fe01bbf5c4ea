using Engine.Core;

namespace Engine.Kernels.Gpu;

// The behaviour-cloning loss head: one work-group (rows in a fixed order, the loss reduced in a fixed
// tree order); kernel in Kernels/BcLoss.h.
internal abstract partial class GpuAccelerator
{
    protected override void BehaviourCloningLossCore(Tensor dlogits, Tensor loss, Tensor logits, Tensor actions, BcLoss kind, int n, int a) =>
        Run(Args(GpuKernel.BcLoss).Tensor(dlogits).Tensor(loss).Tensor(logits).Tensor(actions)
            .Int(kind switch { BcLoss.Mse => 0, BcLoss.Mae => 1, _ => 2 }).Int(n).Int(a), Wg, Wg);
}
