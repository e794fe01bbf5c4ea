using Engine.Core;
using Engine.Kernels.Gpu;

namespace Engine.Kernels.Cuda;

// The GEMM kernel choice of this backend (kernels in Kernels/Gemm.cu). Two GEMM kernels, both
// covering every transpose form with the contract's alpha/beta/bias semantics: `gemm`, exact fp32
// tiled in shared memory (the OpenCL backend's kernel, the default), and `gemm_tf32`, the same
// tiling on TF32 tensor cores (ENGINE_CUDA_PRECISION=tf32 on sm_80 and later; see Tf32Gemm).
internal sealed partial class CudaAccelerator
{
    /// <summary>Rows and columns of gemm_tf32's tile of C (TF32_BM, TF32_BN in Gemm.cu).</summary>
    private const int Tf32Tile = 64;

    /// <summary>Threads of a gemm_tf32 block (4 warps).</summary>
    private const int Tf32Threads = 128;

    protected override int GemmRowsPerBlock => Tf32Gemm ? Tf32Tile : GemmTile;

    protected override void GemmLaunch(ulong c, long cOffset, ulong a, long aOffset, ulong b, long bOffset, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, Tensor bias)
    {
        KernelArgs args = Args(Tf32Gemm ? GpuKernel.GemmTf32 : GpuKernel.Gemm).Buffer(c, cOffset).Buffer(a, aOffset).Buffer(b, bOffset)
            .Tensor(bias).Flag(!bias.IsEmpty).Int(m).Int(n).Int(k).Flag(transA).Flag(transB).Float(alpha).Float(beta);
        if (Tf32Gemm)
        {
            long tilesN = (n + Tf32Tile - 1) / Tf32Tile, tilesM = (m + Tf32Tile - 1) / Tf32Tile;
            Run(args, tilesN * Tf32Threads, tilesM, Tf32Threads, 1);
            return;
        }

        int rts = GemmTile / 4;  // threads per tile side (GEMM_WPT = 4 outputs each way)
        long blocksN = (n + GemmTile - 1) / GemmTile, blocksM = (m + GemmTile - 1) / GemmTile;
        Run(args, blocksN * rts, blocksM * rts, rts, rts);
    }
}
