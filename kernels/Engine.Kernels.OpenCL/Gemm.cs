using Engine.Core;
using Engine.Kernels.Gpu;

namespace Engine.Kernels.OpenCL;

// The GEMM kernel choice of this backend (kernels in Kernels/Gemm.cl). Two GEMM kernels, both
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

    /// <summary>gemm_cpu_nt's 4 rows per work-item (work-groups are 1 item tall), the fewest of the three kernels.</summary>
    protected override int GemmRowsPerBlock => 4;

    protected override void GemmLaunch(ulong c, long cOffset, ulong a, long aOffset, ulong b, long bOffset, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, Tensor bias)
    {
        if (!TiledGemm && transB && !transA)
        {
            KernelArgs nt = Args(GpuKernel.GemmCpuNT).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset).Tensor(bias)
                .Flag(!bias.IsEmpty).Int(m).Int(n).Int(k).Float(alpha).Float(beta);
            Run(nt, (n + 3) / 4, (m + 3) / 4, 16, 1);  // 4 x 4 outputs per work-item
            return;
        }

        KernelArgs args = Args(TiledGemm ? GpuKernel.Gemm : GpuKernel.GemmCpu).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset)
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
