using Engine.Core;

namespace Engine.Model;

/// <summary>Activation views of one transformer block for a (B, T) plan.</summary>
internal sealed class LayerActivations
{
    public required Tensor Norm1 { get; init; }        // [N, C] input of the qkv projection
    public required Tensor Norm1Mean { get; init; }    // [N] (LayerNorm only)
    public required Tensor Norm1Rstd { get; init; }    // [N]
    public required Tensor Qkv { get; init; }          // [N, (Hq + 2Hkv) D], after RoPE
    public required Tensor Attn { get; init; }         // [N, Hq D] attention output
    public required Tensor Lse { get; init; }          // [B, Hq, T]
    public required Tensor ResidMid { get; init; }     // [N, C] residual after attention
    public required Tensor Norm2 { get; init; }        // [N, C]
    public required Tensor Norm2Mean { get; init; }    // [N]
    public required Tensor Norm2Rstd { get; init; }    // [N]
    public required Tensor MlpIn { get; init; }        // [N, F] or [N, 2F] pre-activation
    public required Tensor Act { get; init; }          // [N, F] activation output
    public QkNormActivations? QkNorm { get; init; }    // q/k norm buffers (Qwen3), else null
}

/// <summary>
/// Every activation and scratch buffer of a forward + backward at one (B, T), carved out of one
/// float buffer and one int buffer allocated once. Also holds the host-side staging arrays of
/// the step, so a train step allocates nothing after the first.
/// </summary>
internal sealed class ActivationPlan : IDisposable
{
    private readonly DeviceBuffer floats;
    private readonly DeviceBuffer ints;

    public ActivationPlan(Accelerator acc, ModelConfig config, int b, int t)
    {
        B = b;
        T = t;
        int n = b * t, c = config.Dim;
        long offset = 0;
        var views = new List<(long Offset, long Length)>();

        int Take(long length)
        {
            views.Add((offset, length));
            offset += (length + 15) / 16 * 16;
            return views.Count - 1;
        }

        int[] resid = Enumerable.Range(0, config.Layers + 1).Select(_ => Take((long)n * c)).ToArray();
        var layerSlots = Enumerable.Range(0, config.Layers).Select(_ => new[]
        {
            Take((long)n * c), Take(n), Take(n), Take((long)n * config.QkvDim), Take((long)n * config.AttnDim),
            Take((long)n * config.Heads), Take((long)n * c), Take((long)n * c), Take(n), Take(n),
            Take((long)n * config.MlpInDim), Take((long)n * config.FfnDim),
        }).ToArray();
        int normF = Take((long)n * c), normFMean = Take(n), normFRstd = Take(n);
        int logp = Take(n), entropy = Take(n), dlogp = Take(n);
        int dResid = Take((long)n * c), dNorm = Take((long)n * c), dQkv = Take((long)n * config.QkvDim);
        int dAttn = Take((long)n * config.AttnDim), dMlpIn = Take((long)n * config.MlpInDim);
        int dAct = Take((long)n * config.FfnDim);

        floats = acc.Allocate(offset);
        ints = acc.Allocate(3L * n, DType.I32);
        QkNorm = config.QkNorm ? new QkNormPlan(acc, config, n, config.Layers, backward: true) : null;
        Tensor V(int slot) => floats.Slice(views[slot].Offset, views[slot].Length);

        Resid = resid.Select(V).ToArray();
        Layers = layerSlots.Select((s, l) => new LayerActivations
        {
            Norm1 = V(s[0]), Norm1Mean = V(s[1]), Norm1Rstd = V(s[2]), Qkv = V(s[3]), Attn = V(s[4]), Lse = V(s[5]),
            ResidMid = V(s[6]), Norm2 = V(s[7]), Norm2Mean = V(s[8]), Norm2Rstd = V(s[9]), MlpIn = V(s[10]), Act = V(s[11]),
            QkNorm = QkNorm?.Layers[l],
        }).ToArray();
        NormF = V(normF);
        NormFMean = V(normFMean);
        NormFRstd = V(normFRstd);
        LogProbs = V(logp);
        Entropy = V(entropy);
        DLogProbs = V(dlogp);
        DResid = V(dResid);
        DNorm = V(dNorm);
        DQkv = V(dQkv);
        DAttn = V(dAttn);
        DMlpIn = V(dMlpIn);
        DAct = V(dAct);
        Tokens = ints.Slice(0, n);
        Positions = ints.Slice(n, n);
        Targets = ints.Slice(2L * n, n);
        HostTargets = new int[n];
        HostPositions = new int[n];
        HostWeights = new float[n];
        HostLogProbs = new float[n];
        HostGradients = new float[n];
        Bytes = floats.Bytes + ints.Bytes + (QkNorm?.Bytes ?? 0);
    }

    /// <summary>The q/k norm buffers (Qwen3), with their gradient scratch; null for other families.</summary>
    public QkNormPlan? QkNorm { get; }

    /// <summary>Batch size B.</summary>
    public int B { get; }

    /// <summary>Sequence length T.</summary>
    public int T { get; }

    /// <summary>Rows N = B * T.</summary>
    public int N => B * T;

    /// <summary>Device bytes held by this plan.</summary>
    public long Bytes { get; }

    public Tensor[] Resid { get; }              // L + 1 views of [N, C]: block inputs, then the last block's output

    public LayerActivations[] Layers { get; }

    public Tensor NormF { get; }                // [N, C] final norm output (the LM head's input)

    public Tensor NormFMean { get; }            // [N]

    public Tensor NormFRstd { get; }            // [N]

    public Tensor LogProbs { get; }             // [N] log-prob of each row's target

    public Tensor Entropy { get; }              // [N]

    public Tensor DLogProbs { get; }            // [N] dL/dlogp (SFT; the RL terms write their own)

    public Tensor DResid { get; }               // [N, C] gradient of the residual stream

    public Tensor DNorm { get; }                // [N, C] gradient of a norm's output

    public Tensor DQkv { get; }                 // [N, (Hq + 2Hkv) D]

    public Tensor DAttn { get; }                // [N, Hq D]

    public Tensor DMlpIn { get; }               // [N, F or 2F]

    public Tensor DAct { get; }                 // [N, F]

    public Tensor Tokens { get; }               // [N] int

    public Tensor Positions { get; }            // [N] int

    public Tensor Targets { get; }              // [N] int, negative = not a target

    /// <summary>Host staging for targets [N].</summary>
    public int[] HostTargets { get; }

    /// <summary>Host staging for positions [N].</summary>
    public int[] HostPositions { get; }

    /// <summary>Host staging for per-row weights [N].</summary>
    public float[] HostWeights { get; }

    /// <summary>Host staging for per-row gradients dL/dlogp [N].</summary>
    public float[] HostGradients { get; }

    /// <summary>Host copy of the last log-probs [N].</summary>
    public float[] HostLogProbs { get; }

    public void Dispose()
    {
        floats.Dispose();
        ints.Dispose();
        QkNorm?.Dispose();
    }
}
