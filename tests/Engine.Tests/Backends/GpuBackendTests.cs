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
