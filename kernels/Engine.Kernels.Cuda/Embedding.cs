using Engine.Core;

namespace Engine.Kernels.Cuda;

// Token (+ learned position) embedding; kernels in Kernels/Embedding.cu. The backward runs one
// thread per column (rows summed in order into each table row), so no atomics are needed.
internal sealed partial class CudaAccelerator
{
    protected override void EmbeddingForwardCore(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c)
    {
        bool hasWpe = !wpe.IsEmpty;
        KernelArgs args = Args(CudaKernel.EmbeddingForward).Tensor(output).Tensor(tokens).Tensor(hasWpe ? positions : default)
            .Tensor(wte).Tensor(wpe).Flag(hasWpe).Int(n).Int(c).Long(wte.Length / c).Long(hasWpe ? wpe.Length / c : 0);
        Run(args, c, GridRows(n), Math.Min(Wg, 64), 1);
    }

    protected override void EmbeddingBackwardCore(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c)
    {
        bool hasWpe = !dwpe.IsEmpty;
        KernelArgs args = Args(CudaKernel.EmbeddingBackward).Tensor(dwte).Tensor(dwpe).Tensor(dout).Tensor(tokens)
            .Tensor(hasWpe ? positions : default).Flag(hasWpe).Int(n).Int(c).Long(dwte.Length / c).Long(hasWpe ? dwpe.Length / c : 0);
        Run(args, c, Math.Min(Wg, 64));
    }
}
