using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void TokenLogProbForwardCore(Tensor logp, Tensor entropy, Tensor x, Tensor w, Tensor targets, int n, int c, int v) =>
        throw new NotSupportedException("pending");

    protected override void TokenLogProbBackwardCore(Tensor dx, Tensor dw, Tensor dlogp, Tensor dentropy, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) => throw new NotSupportedException("pending");

    protected override void TokenLogProbForwardBackwardCore(Tensor logp, Tensor dx, Tensor dw, Tensor dlogp, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) => throw new NotSupportedException("pending");
}
