using Engine.Kernels.Cpu;
using Engine.Model;
using Engine.Training;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Model;

/// <summary>
/// The CPU train step allocates nothing once warm, on any thread: the kernels run on the CPU
/// thread pool's workers, so the caller thread's count alone would miss their allocations.
/// </summary>
[Collection(nameof(AllocationCollection))]
public sealed class TrainStepAllocationTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    public void A_warm_cpu_train_step_allocates_nothing_on_any_thread(string family)
    {
        ModelConfig config = family == "gpt2"
            ? ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40)
            : ModelConfig.LlamaFamily(family == "qwen3" ? ModelFamily.Qwen3 : ModelFamily.Qwen2, vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 40, maxPositions: 40, tied: false);
        using CpuAccelerator acc = TestDevices.Cpu(threads: 2);
        using var bench = new SyntheticBenchmark(acc, config, 2, 17, seed: 3);
        for (int i = 0; i < 3; i++)
        {
            bench.Step();
        }

        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 10; i++)
        {
            bench.Step();
        }

        long bytes = GC.GetTotalAllocatedBytes(precise: true) - before;
        output.WriteLine($"{family}: {bytes} bytes allocated (all threads) over 10 steps");
        // A little slack for the runtime's own background work (tiered JIT), never a per-step buffer.
        Assert.True(bytes <= 4096, $"10 warm train steps allocated {bytes} bytes");
    }
}

/// <summary>Allocation counts are process-wide: these tests run alone.</summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection
{
}
