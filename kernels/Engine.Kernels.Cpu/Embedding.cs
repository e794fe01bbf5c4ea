using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void EmbeddingForwardCore(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c) =>
        throw new NotSupportedException("pending");

    protected override void EmbeddingBackwardCore(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c) =>
        throw new NotSupportedException("pending");
}
