using System.Diagnostics;
using Engine.Core;
using Engine.Model;
using Engine.Util;

namespace Engine.Training;

/// <summary>
/// A train step (forward, backward, AdamW) on random weights and random tokens: the body of
/// <c>engine bench-train</c> and of the train-step benchmarks.
/// </summary>
internal sealed class SyntheticBenchmark : IDisposable
{
    private readonly int[] tokens;

    public SyntheticBenchmark(Accelerator acc, ModelConfig config, int batch, int seq, ulong seed = 1)
    {
        Model = new Transformer(acc, config);
        ModelInit.Initialize(Model, seed);
        Optimizer = new AdamWOptimizer(Model, new AdamWOptions { LearningRate = 1e-4f });
        Batch = batch;
        Seq = seq;
        var rng = new SplitMix64(seed + 1);
        tokens = new int[batch * seq];
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = rng.NextInt(config.VocabSize);
        }

        Model.SetTokens(tokens, batch, seq);
    }

    public Transformer Model { get; }

    public AdamWOptimizer Optimizer { get; }

    public int Batch { get; }

    public int Seq { get; }

    /// <summary>Tokens processed per step (B * T).</summary>
    public int TokensPerStep => Batch * Seq;

    /// <summary>One full train step; returns the loss.</summary>
    public float Step()
    {
        Model.ZeroGradients();
        float loss = Model.ForwardBackwardNextToken();
        Optimizer.Step();
        Model.Acc.Synchronize();
        return loss;
    }

    /// <summary>Runs <paramref name="warmup"/> untimed steps, then times <paramref name="steps"/> steps; returns the median ms per step.</summary>
    public (double MedianMs, float LastLoss) Measure(int warmup, int steps)
    {
        float loss = 0;
        for (int i = 0; i < warmup; i++)
        {
            loss = Step();
        }

        var times = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            long start = Stopwatch.GetTimestamp();
            loss = Step();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        Array.Sort(times);
        double median = steps % 2 == 1 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        return (median, loss);
    }

    /// <summary>
    /// SHA-256 (hex) of the weights and both AdamW moments, in that order: the state after the steps
    /// run so far, to check that a kernel change keeps the train step's bits.
    /// </summary>
    public string StateSha256()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (DeviceBuffer buffer in (ReadOnlySpan<DeviceBuffer>)[Model.Params, Optimizer.M, Optimizer.V])
        {
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Model.Acc.ToArray(buffer.All).AsSpan()));
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        Model.Dispose();
    }
}
