using BenchmarkDotNet.Attributes;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// LayerNorm (GPT-2) and RMSNorm (Llama, Qwen2) forward and backward over a preset's B*T rows of
/// width C, on every backend. tokens/s is rows over the median.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class NormBenchmarks : KernelBenchmarkBase
{
    private Tensor x, weight, bias, output, mean, rstd, dout, dx, dweight, dbias;
    private int n, c;
    private float eps;

    /// <summary>Random input, affine parameters and output gradient; one forward of each norm for the saved statistics.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        (n, c, eps) = (Rows, Config.Dim, Config.NormEps);
        long size = (long)n * c;
        x = Random(size, 1);
        weight = Random(c, 2, scale: 0.2f, offset: 1f);
        bias = Random(c, 3, scale: 0.2f);
        output = Zeros(size);
        mean = Zeros(n);
        rstd = Zeros(n);
        dout = Random(size, 4);
        dx = Zeros(size);
        dweight = Zeros(c);
        dbias = Zeros(c);
        LayerNormForward();
    }

    /// <summary>LayerNorm forward, saving mean and rstd.</summary>
    [Benchmark]
    public void LayerNormForward()
    {
        Acc.LayerNormForward(output, mean, rstd, x, weight, bias, n, c, eps);
        Acc.Synchronize();
    }

    /// <summary>LayerNorm backward into dx, dweight and dbias (accumulated: the values grow, the work does not).</summary>
    [Benchmark]
    public void LayerNormBackward()
    {
        Acc.LayerNormBackward(dx, dweight, dbias, dout, x, weight, mean, rstd, n, c);
        Acc.Synchronize();
    }

    /// <summary>RMSNorm forward, saving rstd.</summary>
    [Benchmark]
    public void RmsNormForward()
    {
        Acc.RmsNormForward(output, rstd, x, weight, n, c, eps);
        Acc.Synchronize();
    }

    /// <summary>RMSNorm backward into dx and dweight.</summary>
    [Benchmark]
    public void RmsNormBackward()
    {
        Acc.RmsNormBackward(dx, dweight, dout, x, weight, rstd, n, c);
        Acc.Synchronize();
    }
}
