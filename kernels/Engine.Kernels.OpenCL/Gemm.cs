using Engine.Core;

namespace Engine.Kernels.OpenCL;

// General matrix product (tiled in local memory, all transpose forms) and the bias gradient;
// kernels in Kernels/Gemm.cl.
internal sealed partial class ClAccelerator
{
    // C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C + bias[n]
    protected override void GemmCore(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias) =>
        Gemm(Mem(c), c.Offset, Mem(a), a.Offset, Mem(b), b.Offset, m, n, k, transA, transB, alpha, beta, bias);

    // db[cols] += sum over rows of dy[rows, cols]
    protected override void BiasBackwardCore(Tensor db, Tensor dy, int rows, int cols) =>
        Run(Args(ClKernel.BiasBackward).Tensor(db).Tensor(dy).Int(rows).Int(cols), cols, Wg);

    /// <summary>The GEMM on raw buffers and element offsets (the LM head runs it on its scratch logits).</summary>
    private void Gemm(nint c, long cOffset, nint a, long aOffset, nint b, long bOffset, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias)
    {
        int rts = GemmTile / 4;  // work-items per tile side (GEMM_WPT = 4 outputs each way)
        KernelArgs args = Args(ClKernel.Gemm).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset).Tensor(bias)
            .Flag(!bias.IsEmpty).Int(m).Int(n).Int(k).Flag(transA).Flag(transB).Float(alpha).Float(beta);
        long tilesN = (n + GemmTile - 1) / GemmTile, tilesM = (m + GemmTile - 1) / GemmTile;
        Run(args, tilesN * rts, tilesM * rts, rts, rts);
    }
}
