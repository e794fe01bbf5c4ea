using BenchmarkDotNet.Attributes;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// The LM head fused with log-softmax (per-token log-probs without the [N, V] logits) over a
/// preset's B*T rows, width C and vocabulary V, on every backend: the forward the RL loss reads
/// (with entropies), its backward, and the one-pass forward-backward of next-token training.
/// tokens/s is rows over the median.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class CrossEntropyBenchmarks : KernelBenchmarkBase
{
    private Tensor x, w, targets, logp, entropy, dlogp, dentropy, dx, dw;
    private int n, c, v;

    /// <summary>Random hidden states, head weight and targets; gradients as a token-mean loss gives them.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        (n, c, v) = (Rows, Config.Dim, Config.VocabSize);
        x = Random((long)n * c, 1);
        w = Random((long)v * c, 2, scale: 0.1f);
        var rng = new Random(3);
        targets = Ints([.. Enumerable.Range(0, n).Select(_ => rng.Next(v))]);
        logp = Zeros(n);
        entropy = Zeros(n);
        dlogp = Zeros(n);
        Acc.Fill(dlogp, -1f / n);
        dentropy = Zeros(n);
        Acc.Fill(dentropy, -0.01f / n);
        dx = Zeros((long)n * c);
        dw = Zeros((long)v * c);
    }

    /// <summary>Log-probs and entropies of the targets.</summary>
    [Benchmark]
    public void Forward()
    {
        Acc.TokenLogProbForward(logp, entropy, x, w, targets, n, c, v);
        Acc.Synchronize();
    }

    /// <summary>dx and dw from dlogp and dentropy, recomputing the logits.</summary>
    [Benchmark]
    public void Backward()
    {
        Acc.TokenLogProbBackward(dx, dw, dlogp, dentropy, x, w, targets, n, c, v);
        Acc.Synchronize();
    }

    /// <summary>Log-probs, dx and dw in one pass (next-token cross-entropy).</summary>
    [Benchmark]
    public void ForwardBackward()
    {
        Acc.TokenLogProbForwardBackward(logp, dx, dw, dlogp, x, w, targets, n, c, v);
        Acc.Synchronize();
    }
}
