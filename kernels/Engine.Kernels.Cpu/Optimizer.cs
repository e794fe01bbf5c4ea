using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void SumOfSquaresCore(Tensor result, Tensor x, long n) => throw new NotSupportedException("pending");

    protected override void AdamWCore(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor gradNormSquared, in AdamWSettings settings, long n) =>
        throw new NotSupportedException("pending");
}
