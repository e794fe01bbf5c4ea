using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using IlgpuAccelerator = ILGPU.Runtime.Accelerator;

// ILGPU's CPU accelerator emits a dynamic assembly (ILGPURuntime) that calls the kernel and reads its argument struct.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("ILGPURuntime")]

namespace Engine.Benchmarks.Ilgpu;

/// <summary>
/// The engine's tiled GEMM (kernels/Engine.Kernels.Gpu/Kernels/Gemm.h: 64 x 64 tiles of C per
/// group of 16 x 16 threads, 4 x 4 accumulators per thread, k staged 16 at a time in shared memory
/// with the transposes absorbed by the loads) written as an ILGPU kernel, for the decision record
/// on the GPU kernels' language (README, design notes). C = op(A) op(B), alpha 1, beta 0, no bias.
/// Lives with the benchmarks (and is compiled into the tests): ILGPU stays out of the engine.
/// </summary>
internal sealed class IlgpuGemm : IDisposable
{
    private const int Ts = 64, Tk = 16, Wpt = 4, Rts = Ts / Wpt, Loads = Ts * Tk / (Rts * Rts);

    private readonly Context context;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> kernel;

    private IlgpuGemm(Context context, IlgpuAccelerator accelerator)
    {
        this.context = context;
        Accelerator = accelerator;
        kernel = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(Kernel);
    }

    /// <summary>The ILGPU accelerator the kernel runs on.</summary>
    public IlgpuAccelerator Accelerator { get; }

    /// <summary>ILGPU's CPU accelerator (an emulator: every thread of a group a managed thread), shaped like an NVIDIA GPU (groups of up to 1024 threads).</summary>
    public static IlgpuGemm OnCpu()
    {
        var context = Context.Create(b => b.CPU(CPUDeviceKind.Nvidia).Optimize(OptimizationLevel.O2));
        return new IlgpuGemm(context, context.CreateCPUAccelerator(0));
    }

    /// <summary>ILGPU's CUDA accelerator on the first NVIDIA GPU, or null when there is none.</summary>
    public static IlgpuGemm? OnCuda()
    {
        var context = Context.Create(b => b.Cuda().Optimize(OptimizationLevel.O2));
        if (context.GetCudaDevices().Count == 0)
        {
            context.Dispose();
            return null;
        }

        return new IlgpuGemm(context, context.CreateCudaAccelerator(0));
    }

    /// <summary>C[m,n] = op(A) op(B) on device buffers (A stored [m,k], or [k,m] when transA; B [k,n], or [n,k] when transB).</summary>
    public void Run(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, int m, int n, int k, bool transA, bool transB)
    {
        var groups = new Index2D((n + Ts - 1) / Ts, (m + Ts - 1) / Ts);
        kernel(new KernelConfig(groups, new Index2D(Rts, Rts)), c, a, b, new GemmShape(m, n, k, transA ? 1 : 0, transB ? 1 : 0));
    }

    /// <summary>Uploads, multiplies and downloads (for tests).</summary>
    public float[] Multiply(float[] a, float[] b, int m, int n, int k, bool transA, bool transB)
    {
        using var da = Accelerator.Allocate1D(a);
        using var db = Accelerator.Allocate1D(b);
        using var dc = Accelerator.Allocate1D<float>((long)m * n);
        Run(dc.View, da.View, db.View, m, n, k, transA, transB);
        Accelerator.Synchronize();
        return dc.GetAsArray1D();
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        context.Dispose();
    }

    /// <summary>
    /// Element (row, kk) of a staged tile of op(X), as gemm_tile_load in Gemm.h: X is stored [rows, depth] when
    /// kContiguous, else [depth, rows]; consecutive idx follow the stored layout; zero outside the matrix.
    /// </summary>
    internal static float Load(ArrayView<float> x, bool kContiguous, int gr, int gk, int rows, int depth)
    {
        if (gr >= rows || gk >= depth)
        {
            return 0f;
        }

        return kContiguous ? x[((long)gr * depth) + gk] : x[((long)gk * rows) + gr];
    }

    internal static void Kernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, GemmShape s)
    {
        int tx = Group.IdxX, ty = Group.IdxY, tid = (ty * Rts) + tx;
        int row0 = Grid.IdxY * Ts, col0 = Grid.IdxX * Ts;
        var tileA = SharedMemory.Allocate<float>(Tk * (Ts + 1)); // [kk][r] = op(A)[row0 + r, k0 + kk]
        var tileB = SharedMemory.Allocate<float>(Tk * (Ts + 1)); // [kk][c] = op(B)[k0 + kk, col0 + c]
        var acc = LocalMemory.Allocate<float>(Wpt * Wpt);
        for (int i = 0; i < Wpt * Wpt; i++)
        {
            acc[i] = 0f;
        }

        for (int k0 = 0; k0 < s.K; k0 += Tk)
        {
            for (int l = 0; l < Loads; l++)
            {
                int idx = tid + (l * Rts * Rts);
                bool aRows = s.TransA == 0, bRows = s.TransB != 0; // k contiguous in the stored layout
                int ra = aRows ? idx / Tk : idx % Ts, ka = aRows ? idx % Tk : idx / Ts;
                tileA[(ka * (Ts + 1)) + ra] = Load(a, aRows, row0 + ra, k0 + ka, s.M, s.K);
                int cb = bRows ? idx / Tk : idx % Ts, kb = bRows ? idx % Tk : idx / Ts;
                tileB[(kb * (Ts + 1)) + cb] = Load(b, bRows, col0 + cb, k0 + kb, s.N, s.K);
            }

            Group.Barrier();
            for (int kk = 0; kk < Tk; kk++)
            {
                for (int i = 0; i < Wpt; i++)
                {
                    float av = tileA[(kk * (Ts + 1)) + ty + (i * Rts)];
                    for (int j = 0; j < Wpt; j++)
                    {
                        acc[(i * Wpt) + j] += av * tileB[(kk * (Ts + 1)) + tx + (j * Rts)];
                    }
                }
            }

            Group.Barrier();
        }

        for (int i = 0; i < Wpt; i++)
        {
            int r = row0 + ty + (i * Rts);
            for (int j = 0; j < Wpt; j++)
            {
                int col = col0 + tx + (j * Rts);
                if (r < s.M && col < s.N)
                {
                    c[((long)r * s.N) + col] = acc[(i * Wpt) + j];
                }
            }
        }
    }

    /// <summary>The kernel's scalar arguments (ILGPU kernels take at most a few parameters well as one struct).</summary>
    internal readonly record struct GemmShape(int M, int N, int K, int TransA, int TransB);
}
