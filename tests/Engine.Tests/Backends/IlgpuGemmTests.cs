using Engine.Benchmarks.Ilgpu;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>
/// The engine's GEMM written as an ILGPU kernel (the benchmarks' ILGPU comparison) on ILGPU's CPU
/// accelerator against the CPU backend: the kernel the comparison times computes the same product.
/// Sizes stay small: the CPU accelerator emulates every GPU thread (a 1M-element axpy takes ~1.6 s).
/// </summary>
public sealed class IlgpuGemmTests(ITestOutputHelper output)
{
    [Fact]
    public void The_ilgpu_gemm_matches_the_cpu_backend_in_every_transpose_form()
    {
        using var ilgpu = IlgpuGemm.OnCpu();
        using var cpu = TestDevices.Cpu();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 13, 5), (65, 9, 17) }) // two row tiles, two k steps, ragged edges
        {
            foreach (var (transA, transB) in new[] { (false, false), (false, true), (true, false), (true, true) })
            {
                float[] a = TestData.Uniform(1, (long)m * k), b = TestData.Uniform(2, (long)k * n);
                using var da = cpu.Put(a);
                using var db = cpu.Put(b);
                using var dc = cpu.Put(new float[m * n]);
                cpu.Gemm(dc.All, da.All, db.All, m, n, k, transA, transB);
                float[] expected = cpu.Get(dc);
                float[] actual = ilgpu.Multiply(a, b, m, n, k, transA, transB);
                double error = Compare.RelativeError(expected, actual);
                output.WriteLine($"{(transA ? "T" : "N")}{(transB ? "T" : "N")} {m}x{n}x{k}: relative error {error:E2}");
                Assert.True(error <= 1e-5, $"{m}x{n}x{k} transA={transA} transB={transB}: ILGPU vs the CPU backend {error:E2}");
            }
        }
    }
}
