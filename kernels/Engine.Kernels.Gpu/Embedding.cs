using Engine.Core;

namespace Engine.Kernels.Gpu;

// Token (+ learned position) embedding; kernels in Kernels/Embedding.h. The backward runs one
// work-item per column (rows summed in order into each table row), so no atomics are needed.
internal abstract partial class GpuAccelerator
{
    protected override void EmbeddingForwardCore(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c)
    {
        bool hasWpe = !wpe.IsEmpty;
        KernelArgs args = Args(GpuKernel.EmbeddingForward).Tensor(output).Tensor(tokens).Tensor(hasWpe ? positions : default)
            .Tensor(wte).Tensor(wpe).Flag(hasWpe).Int(n).Int(c).Long(wte.Length / c).Long(hasWpe ? wpe.Length / c : 0);
        Run(args, c, GridRows(n), Math.Min(Wg, 64), 1);
    }

    protected override void EmbeddingBackwardCore(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c)
    {
        bool hasWpe = !dwpe.IsEmpty;
        KernelArgs args = Args(GpuKernel.EmbeddingBackward).Tensor(dwte).Tensor(dwpe).Tensor(dout).Tensor(tokens)
            .Tensor(hasWpe ? positions : default).Flag(hasWpe).Int(n).Int(c).Long(dwte.Length / c).Long(hasWpe ? dwpe.Length / c : 0);
        Run(args, c, Math.Min(Wg, 64));
    }
}
