using Engine.Core;
using Engine.Tests.Support;
using Engine.Training;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>
/// What every GPU backend (OpenCL, CUDA) promises beyond op parity with the CPU: memmove copies,
/// device-side index checks, bit-for-bit reproducible training, no host allocation per launch.
/// </summary>
public sealed class GpuBackendTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [Theory]
    [BackendDevices]
    public void Overlapping_copies_move_like_memmove(string device)
    {
        Accelerator acc = fx.Device(device);
        float[] data = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
        using DeviceBuffer buffer = acc.Allocate(data.Length);
        acc.Upload(buffer.All, data);
        acc.Copy(buffer.Slice(10, 900), buffer.Slice(0, 900));
        float[] result = acc.ToArray(buffer.All);
        float[] expected = (float[])data.Clone();
        Array.Copy(data, 0, expected, 10, 900);
        Assert.Equal(expected, result);
    }

    [Theory]
    [BackendDevices]
    public void Bad_indices_give_nan_rows_instead_of_stray_accesses(string device)
    {
        Accelerator acc = fx.Device(device);
        const int c = 5;
        using DeviceBuffer wte = acc.Put(TestData.Uniform(1, 4 * c));
        using DeviceBuffer tokens = acc.Put(new[] { 1, 4, -1, 3 });
        using DeviceBuffer outBuf = acc.Allocate(4 * c);
        acc.EmbeddingForward(outBuf.All, tokens.All, default, wte.All, default, 4, c);
        float[] result = acc.Get(outBuf);
        Assert.DoesNotContain(result[..c], float.IsNaN);
        Assert.All(result[c..(3 * c)], x => Assert.True(float.IsNaN(x)));
        Assert.DoesNotContain(result[(3 * c)..], float.IsNaN);

        using DeviceBuffer rows = acc.Put(new[] { 0, 7 });
        using DeviceBuffer dst = acc.Allocate(2 * c);
        acc.GatherRows(dst.All, wte.All, rows.All, 2, c);
        float[] gathered = acc.Get(dst);
        Assert.DoesNotContain(gathered[..c], float.IsNaN);
        Assert.All(gathered[c..], x => Assert.True(float.IsNaN(x)));
    }

    [Theory]
    [BackendDevices]
    public void Attention_and_gemm_cut_into_grid_slices_give_the_same_bits(string device)
    {
        // CUDA caps grid y and z at 65535 blocks, so more batches (attention), rows (paged attention)
        // or row blocks of C (GEMM) are launched slice by slice; a lowered limit runs that path here
        // on small shapes.
        var gpu = (Engine.Kernels.Gpu.GpuAccelerator)fx.Device(device);
        long limit = gpu.GridSliceLimit;
        try
        {
            float[] whole = AttentionOutputs(gpu);
            foreach (long sliced in new long[] { 1, 2 })
            {
                gpu.GridSliceLimit = sliced;
                Assert.True(whole.AsSpan().SequenceEqual(AttentionOutputs(gpu)), $"slices of {sliced} differ from one launch");
            }
        }
        finally
        {
            gpu.GridSliceLimit = limit;
        }
    }

    /// <summary>Attention forward and backward over 3 batches, 5 rows of paged attention over 2 sequences, two 37-row GEMMs: every output, concatenated.</summary>
    private static float[] AttentionOutputs(Accelerator acc)
    {
        const int b = 3, t = 5, hq = 2, hkv = 1, d = 8;
        float scale = 1f / MathF.Sqrt(d);
        long rows = (long)b * t, width = (hq + (2 * hkv)) * d;
        using DeviceBuffer qkv = acc.Put(TestData.Uniform(11, rows * width, 2f));
        using DeviceBuffer output = acc.Allocate(rows * hq * d), lse = acc.Allocate(rows * hq);
        acc.AttentionForward(output.All, lse.All, qkv.All, b, t, hq, hkv, d, scale);
        using DeviceBuffer dqkv = acc.Allocate(rows * width), dout = acc.Put(TestData.Uniform(12, rows * hq * d));
        acc.AttentionBackward(dqkv.All, dout.All, qkv.All, output.All, lse.All, b, t, hq, hkv, d, scale);

        // Paged: sequence s holds blocks 1 + s, 3 + s, 5 + s of 4 positions; row i is sequence i % 2.
        const int blockSize = 4, maxBlocks = 3, n = 5;
        var shape = new KvCacheShape(2 * maxBlocks + 1, 1, hkv, d, blockSize);
        int[] tables = [1, 3, 5, 2, 4, 6];
        int[] rowPos = [0, 9, 6, 1, 10];
        int[] rowSeq = rowPos.Select((_, i) => i % 2).ToArray();
        int[] slots = rowPos.Select((p, i) => (tables[(rowSeq[i] * maxBlocks) + (p / blockSize)] * blockSize) + (p % blockSize)).ToArray();
        using DeviceBuffer cache = acc.Put(TestData.Uniform(13, shape.Length)), rowsQkv = acc.Put(TestData.Uniform(14, n * width, 2f));
        using DeviceBuffer slotBuf = acc.Put(slots), tableBuf = acc.Put(tables), seqBuf = acc.Put(rowSeq), posBuf = acc.Put(rowPos);
        using DeviceBuffer paged = acc.Allocate((long)n * hq * d);
        acc.KvCacheWrite(cache.All, rowsQkv.All, slotBuf.All, n, hq, 0, shape);
        acc.PagedAttention(paged.All, rowsQkv.All, cache.All, tableBuf.All, seqBuf.All, posBuf.All, n, maxBlocks, hq, 0, shape, scale);
        // GEMM: C[37, 20] = 0.5 A B + 0.25 C + bias, B untransposed and transposed.
        const int m = 37, gn = 20, gk = 9;
        using DeviceBuffer a = acc.Put(TestData.Uniform(15, m * gk)), bias = acc.Put(TestData.Uniform(16, gn));
        using DeviceBuffer bNN = acc.Put(TestData.Uniform(17, gk * gn)), bNT = acc.Put(TestData.Uniform(18, gn * gk));
        using DeviceBuffer cNN = acc.Put(TestData.Uniform(19, m * gn)), cNT = acc.Put(TestData.Uniform(20, m * gn));
        acc.Gemm(cNN.All, a.All, bNN.All, m, gn, gk, transA: false, transB: false, alpha: 0.5f, beta: 0.25f, bias: bias.All);
        acc.Gemm(cNT.All, a.All, bNT.All, m, gn, gk, transA: false, transB: true, alpha: 0.5f, beta: 0.25f, bias: bias.All);
        return [.. acc.Get(output), .. acc.Get(lse), .. acc.Get(dqkv), .. acc.Get(paged), .. acc.Get(cNN), .. acc.Get(cNT)];
    }

    [Theory]
    [BackendDevices]
    public void Train_steps_are_reproducible_bit_for_bit(string device)
    {
        Accelerator acc = fx.Device(device);
        var config = global::Engine.Model.ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40);
        float[] Run()
        {
            using var bench = new SyntheticBenchmark(acc, config, 2, 17, seed: 3);
            bench.Step();
            bench.Step();
            return [.. acc.ToArray(bench.Model.Grads!.All), .. acc.ToArray(bench.Model.Params.All)];
        }

        float[] a = Run(), b = Run();
        Assert.True(a.AsSpan().SequenceEqual(b), "two identical train runs on the device differ");
    }

    [Theory]
    [BackendDevices]
    public void Train_steps_allocate_nothing_on_the_host(string device)
    {
        Accelerator acc = fx.Device(device);
        var config = global::Engine.Model.ModelConfig.LlamaFamily(global::Engine.Model.ModelFamily.Qwen2, vocab: 61, dim: 32, layers: 2,
            heads: 4, kvHeads: 2, ffn: 40, maxPositions: 40, tied: false);
        using var bench = new SyntheticBenchmark(acc, config, 2, 17, seed: 3);
        bench.Step();
        bench.Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++)
        {
            bench.Step();
        }

        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{bytes} bytes allocated over 5 steps");
        Assert.True(bytes <= 256, $"5 train steps allocated {bytes} bytes on the host (kernel launches must not allocate)");
    }
}
