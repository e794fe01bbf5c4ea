using System.Globalization;
using Engine.Core;
using Engine.IO;
using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// The behaviour-cloning policy: an MLP <c>D -> H -> H -> A</c> with GELU between layers (the op contract's
/// activation; the paper's CNN uses ReLU, which the contract does not have), run on the accelerator's ops
/// (Gemm with bias, GELU, bias backward) so it runs on every backend. Parameters and gradients are one flat
/// buffer each: W1 [H, D], b1 [H], W2 [H, H], b2 [H], W3 [A, H], b3 [A].
/// </summary>
internal sealed class MlpPolicy : IDisposable
{
    private readonly DeviceBuffer input, z1, a1, z2, a2, logits, dLogits, dA, dX;   // activations, [maxBatch, width]
    private readonly DeviceBuffer actionIds, lossValue;                             // [maxBatch] I32, [1]
    private readonly float[] hostLogits;
    private readonly float[] hostLoss = new float[1];

    public MlpPolicy(Accelerator acc, int inputSize, int hidden, int actions, int maxBatch)
    {
        if (inputSize <= 0 || hidden <= 0 || actions < 2 || maxBatch <= 0)
        {
            throw new EngineException($"MLP policy: input {inputSize}, hidden {hidden}, actions {actions} and batch {maxBatch} must be positive (at least 2 actions)");
        }

        Acc = acc;
        InputSize = inputSize;
        Hidden = hidden;
        Actions = actions;
        MaxBatch = maxBatch;
        ParameterCount = (long)hidden * inputSize + hidden + (long)hidden * hidden + hidden + (long)actions * hidden + actions;
        Params = acc.Allocate(ParameterCount);
        Grads = acc.Allocate(ParameterCount);
        input = acc.Allocate((long)maxBatch * inputSize);
        z1 = acc.Allocate((long)maxBatch * hidden);
        a1 = acc.Allocate((long)maxBatch * hidden);
        z2 = acc.Allocate((long)maxBatch * hidden);
        a2 = acc.Allocate((long)maxBatch * hidden);
        logits = acc.Allocate((long)maxBatch * actions);
        dLogits = acc.Allocate((long)maxBatch * actions);
        dA = acc.Allocate((long)maxBatch * hidden);
        dX = acc.Allocate((long)maxBatch * inputSize);
        actionIds = acc.Allocate(maxBatch, DType.I32);
        lossValue = acc.Allocate(1);
        hostLogits = new float[maxBatch * actions];
    }

    public Accelerator Acc { get; }

    public int InputSize { get; }

    public int Hidden { get; }

    public int Actions { get; }

    public int MaxBatch { get; }

    public long ParameterCount { get; }

    /// <summary>[ParameterCount] parameters.</summary>
    public DeviceBuffer Params { get; }

    /// <summary>[ParameterCount] gradients (accumulated by <see cref="LossAndGradients"/>).</summary>
    public DeviceBuffer Grads { get; }

    private long W1 => 0;
    private long B1 => W1 + (long)Hidden * InputSize;
    private long W2 => B1 + Hidden;
    private long B2 => W2 + (long)Hidden * Hidden;
    private long W3 => B2 + Hidden;
    private long B3 => W3 + (long)Actions * Hidden;

    /// <summary>PyTorch's default Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, from <paramref name="seed"/>.</summary>
    public void Initialize(ulong seed)
    {
        var random = new SplitMix64(seed);
        var values = new float[ParameterCount];
        void Fill(long offset, long count, int fanIn)
        {
            float bound = 1f / MathF.Sqrt(fanIn);
            for (long i = 0; i < count; i++)
            {
                values[offset + i] = (float)((2 * random.NextDouble() - 1) * bound);
            }
        }

        Fill(W1, B1 - W1, InputSize);
        Fill(B1, Hidden, InputSize);
        Fill(W2, B2 - W2, Hidden);
        Fill(B2, Hidden, Hidden);
        Fill(W3, B3 - W3, Hidden);
        Fill(B3, Actions, Hidden);
        Acc.Upload(Params.All, values);
    }

    /// <summary>
    /// Forward of <paramref name="n"/> rows of <paramref name="observations"/> [n, D]; returns the logits [n, A] on the host
    /// (a view valid until the next call).
    /// </summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> observations, int n)
    {
        ForwardOnDevice(observations, n);
        Span<float> result = hostLogits.AsSpan(0, n * Actions);
        Acc.Download(logits.Slice(0, (long)n * Actions), result);
        return result;
    }

    /// <summary>The forward pass; the logits [n, A] stay on the device.</summary>
    private void ForwardOnDevice(ReadOnlySpan<float> observations, int n)
    {
        CheckBatch(observations, n);
        Acc.Upload(input.Slice(0, (long)n * InputSize), observations[..(n * InputSize)]);
        int d = InputSize, h = Hidden, a = Actions;
        Acc.Gemm(z1.All, input.All, Params.Slice(W1, (long)h * d), n, h, d, transA: false, transB: true, bias: Params.Slice(B1, h));
        Acc.GeluForward(a1.All, z1.All, (long)n * h);
        Acc.Gemm(z2.All, a1.All, Params.Slice(W2, (long)h * h), n, h, h, transA: false, transB: true, bias: Params.Slice(B2, h));
        Acc.GeluForward(a2.All, z2.All, (long)n * h);
        Acc.Gemm(logits.All, a2.All, Params.Slice(W3, (long)a * h), n, a, h, transA: false, transB: true, bias: Params.Slice(B3, a));
    }

    /// <summary>
    /// Backward of the last forward from the <c>dL/dlogits</c> [n, A] in the device buffer: accumulates into
    /// <see cref="Grads"/> and, when <paramref name="inputGradient"/> is not empty, writes <c>dL/dobservations</c> [n, D] into it.
    /// </summary>
    private void BackwardOnDevice(int n, Span<float> inputGradient)
    {
        int d = InputSize, h = Hidden, a = Actions;
        // Layer 3: logits = a2 W3^T + b3.
        Acc.Gemm(Grads.Slice(W3, (long)a * h), dLogits.All, a2.All, a, h, n, transA: true, transB: false, beta: 1f);
        Acc.BiasBackward(Grads.Slice(B3, a), dLogits.All, n, a);
        Acc.Gemm(dA.All, dLogits.All, Params.Slice(W3, (long)a * h), n, h, a, transA: false, transB: false);
        Acc.GeluBackward(dA.All, dA.All, z2.All, (long)n * h);
        // Layer 2: z2 = a1 W2^T + b2.
        Acc.Gemm(Grads.Slice(W2, (long)h * h), dA.All, a1.All, h, h, n, transA: true, transB: false, beta: 1f);
        Acc.BiasBackward(Grads.Slice(B2, h), dA.All, n, h);
        Acc.Gemm(a2.All, dA.All, Params.Slice(W2, (long)h * h), n, h, h, transA: false, transB: false);   // a2 reused as dA1
        Acc.GeluBackward(a2.All, a2.All, z1.All, (long)n * h);
        // Layer 1: z1 = x W1^T + b1.
        Acc.Gemm(Grads.Slice(W1, (long)h * d), a2.All, input.All, h, d, n, transA: true, transB: false, beta: 1f);
        Acc.BiasBackward(Grads.Slice(B1, h), a2.All, n, h);
        if (!inputGradient.IsEmpty)
        {
            Acc.Gemm(dX.All, a2.All, Params.Slice(W1, (long)h * d), n, d, h, transA: false, transB: false);
            Acc.Download(dX.Slice(0, (long)n * d), inputGradient[..(n * d)]);
        }
    }

    /// <summary>
    /// One BC loss evaluation, all on the device: forward, the loss head (<see cref="Accelerator.BehaviourCloningLoss"/>),
    /// backward; only the loss (and the input gradient, when asked) comes back. Zeroes the gradients first when asked;
    /// returns the loss. <paramref name="inputGradient"/>, when not empty, receives <c>dL/dobservations</c> [n, D].
    /// </summary>
    public float LossAndGradients(ReadOnlySpan<float> observations, ReadOnlySpan<int> actions, int n, BcLoss loss, bool zeroGradients = true,
        Span<float> inputGradient = default)
    {
        if (zeroGradients)
        {
            Acc.Zero(Grads.All);
        }

        ForwardOnDevice(observations, n);
        Acc.Upload(actionIds.Slice(0, n), actions[..n]);
        Acc.BehaviourCloningLoss(dLogits.All, lossValue.All, logits.All, actionIds.All, loss, n, Actions);
        BackwardOnDevice(n, inputGradient);
        Acc.Download(lossValue.All, hostLoss);
        return hostLoss[0];
    }

    /// <summary>
    /// Actions for <paramref name="n"/> observations: greedy (argmax of the logits, lowest index on ties) when
    /// <paramref name="temperature"/> is 0, else sampled from <c>softmax(logits / temperature)</c> by inverting its
    /// cumulative sum at <paramref name="uniforms"/>[i] in [0, 1) (one per row).
    /// </summary>
    public void Act(ReadOnlySpan<float> observations, int n, Span<int> actions, float temperature = 0, ReadOnlySpan<float> uniforms = default)
    {
        if (temperature > 0 && uniforms.Length < n)
        {
            throw new EngineException($"MLP policy: sampling {n} actions needs {n} uniforms, got {uniforms.Length}");
        }

        for (int start = 0; start < n; start += MaxBatch)
        {
            int m = Math.Min(MaxBatch, n - start);
            ReadOnlySpan<float> z = Forward(observations.Slice(start * InputSize, m * InputSize), m);
            for (int i = 0; i < m; i++)
            {
                ReadOnlySpan<float> row = z.Slice(i * Actions, Actions);
                actions[start + i] = temperature > 0 ? SampleAction(row, temperature, uniforms[start + i]) : Argmax(row);
            }
        }
    }

    private static int Argmax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int j = 1; j < row.Length; j++)
        {
            if (row[j] > row[best])
            {
                best = j;
            }
        }

        return best;
    }

    /// <summary>The action whose cumulative probability under <c>softmax(row / temperature)</c> first exceeds <paramref name="u"/> (in double).</summary>
    internal static int SampleAction(ReadOnlySpan<float> row, float temperature, float u)
    {
        double max = row[Argmax(row)], sum = 0;
        foreach (float z in row)
        {
            sum += Math.Exp((z - max) / temperature);
        }

        double target = u * sum, cumulative = 0;
        for (int j = 0; j < row.Length; j++)
        {
            cumulative += Math.Exp((row[j] - max) / temperature);
            if (target < cumulative)
            {
                return j;
            }
        }

        return row.Length - 1;   // u * sum rounded up to the last partial sum
    }

    /// <summary>The parameters as a host array.</summary>
    public float[] GetParameters() => Acc.ToArray(Params.All);

    /// <summary>Replaces the parameters from a host array of <see cref="ParameterCount"/> floats.</summary>
    public void SetParameters(ReadOnlySpan<float> values)
    {
        if (values.Length != ParameterCount)
        {
            throw new EngineException($"MLP policy: {values.Length} parameters given, {ParameterCount} expected");
        }

        Acc.Upload(Params.All, values);
    }

    /// <summary>Writes the policy as safetensors (one flat tensor plus its shape in the metadata), atomically.</summary>
    public void Save(string path, string environment)
    {
        var metadata = new Dictionary<string, string>
        {
            ["kind"] = "engine-mlp-policy",
            ["environment"] = environment,
            ["input"] = InputSize.ToString(CultureInfo.InvariantCulture),
            ["hidden"] = Hidden.ToString(CultureInfo.InvariantCulture),
            ["actions"] = Actions.ToString(CultureInfo.InvariantCulture),
        };
        var writer = new SafeTensorsWriter(metadata);
        writer.Add("parameters", [(int)ParameterCount], GetParameters());
        writer.Write(path);
    }

    /// <summary>Reads a policy written by <see cref="Save"/>; returns it and its environment's name.</summary>
    public static (MlpPolicy Policy, string Environment) Load(Accelerator acc, string path, int maxBatch)
    {
        if (!File.Exists(path))
        {
            throw new EngineException($"policy '{path}' does not exist");
        }

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        if (file.Metadata.GetValueOrDefault("kind") != "engine-mlp-policy" || !file.Contains("parameters"))
        {
            throw new EngineException($"policy '{path}' is not an engine MLP policy (written by 'engine offline bc')");
        }

        int Read(string key) => int.TryParse(file.Metadata.GetValueOrDefault(key), NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0
            ? v : throw new EngineException($"policy '{path}': metadata '{key}' must be a positive integer");
        var policy = new MlpPolicy(acc, Read("input"), Read("hidden"), Read("actions"), maxBatch);
        try
        {
            if (file.GetInfo("parameters").ElementCount != policy.ParameterCount)
            {
                throw new EngineException($"policy '{path}': 'parameters' has {file.GetInfo("parameters").ElementCount} values, the shape needs {policy.ParameterCount}");
            }

            policy.SetParameters(file.ReadAsFloat32("parameters"));
            return (policy, file.Metadata.GetValueOrDefault("environment") ?? "");
        }
        catch
        {
            policy.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (DeviceBuffer b in (DeviceBuffer[])[Params, Grads, input, z1, a1, z2, a2, logits, dLogits, dA, dX, actionIds, lossValue])
        {
            b.Dispose();
        }
    }

    private void CheckBatch(ReadOnlySpan<float> observations, int n)
    {
        if (n <= 0 || n > MaxBatch || observations.Length < n * InputSize)
        {
            throw new EngineException($"MLP policy: batch of {n} rows (at most {MaxBatch}) needs {n * InputSize} floats, got {observations.Length}");
        }
    }
}
