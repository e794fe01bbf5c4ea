using BenchmarkDotNet.Attributes;
using Engine.Core;
using Engine.Model;

namespace Engine.Benchmarks;

/// <summary>
/// One optimizer update of every parameter of a preset's model, on every backend, as
/// <c>AdamWOptimizer.Step</c> issues it: the squared global gradient norm, then AdamW with
/// gradient clipping and weight decay.
/// </summary>
[MemoryDiagnoser]
public class AdamWBenchmarks : KernelBenchmarkBase
{
    private Tensor param, grad, m, v, normSquared;
    private long n;

    /// <summary>Random parameters and gradients over the preset's flat parameter buffer.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        n = new ParameterLayout(Config).TotalLength;
        param = Random(n, 1, scale: 0.04f);
        grad = Random(n, 2, scale: 0.01f);
        m = Zeros(n);
        v = Zeros(n);
        normSquared = Zeros(1);
    }

    /// <summary>Gradient norm and the update.</summary>
    [Benchmark]
    public void Step()
    {
        Acc.Zero(normSquared);
        Acc.SumOfSquares(normSquared, grad, n);
        Acc.AdamW(param, grad, m, v, normSquared, new AdamWSettings(1e-4f, 0.9f, 0.999f, 1e-8f, 0.1f, Step: 1, MaxGradNorm: 1f), n);
        Acc.Synchronize();
    }
}
