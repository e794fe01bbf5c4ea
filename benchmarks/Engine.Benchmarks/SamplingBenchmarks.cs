using BenchmarkDotNet.Attributes;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// Token sampling from the logits of one decode step (<see cref="DecodeBenchmarks.Batch"/> rows
/// over a preset's vocabulary), on every backend: greedy, plain temperature sampling, and the
/// top-k/top-p path that sorts. tokens/s is sampled tokens over the median.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class SamplingBenchmarks : KernelBenchmarkBase
{
    /// <summary>Rows sampled per invocation.</summary>
    public const int Sequences = DecodeBenchmarks.Batch;

    private Tensor tokens, sampleLogp, policyLogp, logits, uniforms, temperatures, topK, topP;
    private int v;

    /// <summary>greedy (temperature 0), sample (temperature 1, no truncation) or top-p (temperature 1, top-k 50, top-p 0.9).</summary>
    [Params("greedy", "sample", "top-p")]
    public string Mode { get; set; } = "sample";

    /// <summary>Random logits and uniforms; per-row settings of the mode.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        v = Config.VocabSize;
        tokens = Zeros(Sequences, DType.I32);
        sampleLogp = Zeros(Sequences);
        policyLogp = Zeros(Sequences);
        logits = Random((long)Sequences * v, 1, scale: 8f);
        uniforms = Random(Sequences, 2, offset: 0.5f);
        temperatures = Zeros(Sequences);
        Acc.Fill(temperatures, Mode == "greedy" ? 0f : 1f);
        topK = Ints(Enumerable.Repeat(Mode == "top-p" ? 50 : 0, Sequences).ToArray());
        topP = Zeros(Sequences);
        Acc.Fill(topP, Mode == "top-p" ? 0.9f : 1f);
    }

    /// <summary>One token per row.</summary>
    [Benchmark]
    public void Sample()
    {
        Acc.SampleTokens(tokens, sampleLogp, policyLogp, logits, uniforms, temperatures, topK, topP, Sequences, v);
        Acc.Synchronize();
    }
}
