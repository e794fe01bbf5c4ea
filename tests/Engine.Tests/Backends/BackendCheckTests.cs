using Engine.Core;
using Engine.Tests.Support;
using Engine.Tools;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>
/// The CLI's backend check (<c>engine check-backends</c>, the parity suite for machines without .NET):
/// it covers the op families and the model-level runs, and its error measure flags what it should.
/// The check against real devices is the parity suite's job here (the GPU check runs this one on a lent GPU).
/// </summary>
public sealed class BackendCheckTests(ITestOutputHelper output)
{
    [Fact]
    public void The_cpu_with_one_thread_passes_against_the_cpu_with_all()
    {
        using var reference = TestDevices.Cpu();
        using var single = TestDevices.Cpu(1);
        var rows = BackendCheck.Run(reference, single, 1.0, row => output.WriteLine(row.ToString()));
        Assert.All(rows, row => Assert.True(row.Passed, row.ToString()));
        foreach (string op in new[] { "Copy/Fill/Zero", "Gemm NN", "Gemm TT", "BiasBackward", "Embedding", "LayerNorm", "RmsNorm", "Rope", "Gelu",
                     "SwiGlu", "Add/Scale", "SumOfSquares", "Attention", "KvCacheWrite+PagedAttention", "TrainStep gpt2", "TrainStep qwen2",
                     "Generate gpt2 greedy", "Generate qwen2 top-p" })
        {
            Assert.Contains(rows, row => row.Op.StartsWith(op, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void The_error_measure_flags_nan_length_and_scale()
    {
        Assert.Equal(0, BackendCheck.RelativeError([1f, -2f], [1f, -2f]));
        Assert.Equal(0.25, BackendCheck.RelativeError([1f, -4f], [2f, -4f]), 12);
        Assert.Equal(double.PositiveInfinity, BackendCheck.RelativeError([1f, 2f], [1f, float.NaN]));
        Assert.Equal(double.PositiveInfinity, BackendCheck.RelativeError([1f, 2f], [1f]));
        Assert.False(new BackendCheck.Row("op", "out", 2e-5, 1e-5).Passed);
        Assert.True(new BackendCheck.Row("op", "out", 1e-5, 1e-5).Passed);
        Assert.False(new BackendCheck.Row("op", "out", double.NaN, 1e-5).Passed);
    }
}
