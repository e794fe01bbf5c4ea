using BenchmarkDotNet.Attributes;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// Causal grouped-query attention forward and backward at a preset's train-step shape (B, T, heads,
/// head size), on every backend. tokens/s is B*T over the median.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class AttentionBenchmarks : KernelBenchmarkBase
{
    private Tensor qkv, output, lse, doutput, dqkv;
    private int b, t, hq, hkv, d;
    private float scale;

    /// <summary>Random q, k, v and output gradient; one forward so the backward has its saved state.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        (b, t) = Presets.TrainShape(Preset);
        var config = Config;
        (hq, hkv, d) = (config.Heads, config.KvHeads, config.HeadDim);
        scale = 1f / MathF.Sqrt(d);
        long width = (long)(hq + 2 * hkv) * d;
        qkv = Random(Rows * width, 1);
        output = Zeros((long)Rows * hq * d);
        lse = Zeros((long)Rows * hq);
        doutput = Random((long)Rows * hq * d, 2);
        dqkv = Zeros(Rows * width);
        Forward();
    }

    /// <summary>Forward: output and log-sum-exp.</summary>
    [Benchmark]
    public void Forward()
    {
        Acc.AttentionForward(output, lse, qkv, b, t, hq, hkv, d, scale);
        Acc.Synchronize();
    }

    /// <summary>Backward: dq, dk, dv, recomputing the probabilities.</summary>
    [Benchmark]
    public void Backward()
    {
        Acc.AttentionBackward(dqkv, doutput, qkv, output, lse, b, t, hq, hkv, d, scale);
        Acc.Synchronize();
    }
}
