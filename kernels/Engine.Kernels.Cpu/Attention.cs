using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void AttentionForwardCore(Tensor output, Tensor lse, Tensor qkv, int b, int t, int hq, int hkv, int d, float scale) =>
        throw new NotSupportedException("pending");

    protected override void AttentionBackwardCore(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale) => throw new NotSupportedException("pending");
}
