using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void GeluForwardCore(Tensor y, Tensor x, long n) => throw new NotSupportedException("pending");

    protected override void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n) => throw new NotSupportedException("pending");

    protected override void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f) => throw new NotSupportedException("pending");

    protected override void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f) => throw new NotSupportedException("pending");

    protected override void AddCore(Tensor y, Tensor a, Tensor b, long n) => throw new NotSupportedException("pending");

    protected override void ScaleCore(Tensor x, float s, long n) => throw new NotSupportedException("pending");
}
