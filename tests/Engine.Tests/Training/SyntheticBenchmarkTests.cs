using Engine.Kernels.Cpu;
using Engine.Model;
using Engine.Training;
using Engine.Tests.Support;

namespace Engine.Tests.Training;

/// <summary>The state hash of <c>bench-train --hash</c>: equal for equal runs, different after another step.</summary>
public sealed class SyntheticBenchmarkTests
{
    private static readonly ModelConfig Config = ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40);

    [Fact]
    public void The_state_hash_is_the_same_for_the_same_steps_on_any_thread_count_and_changes_with_a_step()
    {
        string Run(int threads, int steps)
        {
            using CpuAccelerator acc = TestDevices.Cpu(threads);
            using var bench = new SyntheticBenchmark(acc, Config, 2, 17, seed: 5);
            for (int i = 0; i < steps; i++)
            {
                bench.Step();
            }

            return bench.StateSha256();
        }

        string twoSteps = Run(2, 2);
        Assert.Matches("^[0-9a-f]{64}$", twoSteps);
        Assert.Equal(twoSteps, Run(1, 2));
        Assert.NotEqual(twoSteps, Run(2, 3));
    }
}
