using Engine.Core;

namespace Engine.Kernels.OpenCL;

// General matrix product and the bias gradient; kernels in Kernels/Gemm.cl. Two GEMM kernels, both
// covering every transpose form with the contract's alpha/beta/bias semantics: `gemm`, tiled in
// local memory (GPUs and accelerators), and `gemm_cpu`, register-blocked without local memory or
// barriers (CPU OpenCL devices such as PoCL, where the tiled kernel is about 10x slower), with
// `gemm_cpu_nt` for its transB form (dot products along k).
internal sealed partial class ClAccelerator
{
    /// <summary>Rows of C per work-item of gemm_cpu (CPU_RM in Gemm.cl).</summary>
    private const int GemmCpuRows = 8;

    /// <summary>
    /// True to run the local-memory tiled GEMM (the default except on CPU devices); tests set it to
    /// check both kernels on any device.
    /// </summary>
    internal bool TiledGemm { get; set; }

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
        if (!TiledGemm && transB && !transA)
        {
            KernelArgs nt = Args(ClKernel.GemmCpuNT).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset).Tensor(bias)
                .Flag(!bias.IsEmpty).Int(m).Int(n).Int(k).Float(alpha).Float(beta);
            Run(nt, (n + 3) / 4, (m + 3) / 4, 16, 1);  // 4 x 4 outputs per work-item
            return;
        }

        KernelArgs args = Args(TiledGemm ? ClKernel.Gemm : ClKernel.GemmCpu).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset)
            .Tensor(bias).Flag(!bias.IsEmpty).Int(m).Int(n).Int(k).Flag(transA).Flag(transB).Float(alpha).Float(beta);
        if (TiledGemm)
        {
            int rts = GemmTile / 4;  // work-items per tile side (GEMM_WPT = 4 outputs each way)
            long tilesN = (n + GemmTile - 1) / GemmTile, tilesM = (m + GemmTile - 1) / GemmTile;
            Run(args, tilesN * rts, tilesM * rts, rts, rts);
        }
        else
        {
            Run(args, (n + 7) / 8, (m + GemmCpuRows - 1) / GemmCpuRows, 16, 1);  // GemmCpuRows x 8 outputs per work-item
        }
    }
}
