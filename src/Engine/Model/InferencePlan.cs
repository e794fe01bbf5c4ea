using Engine.Core;

namespace Engine.Model;

/// <summary>A KV cache pool as the model's attention sees it.</summary>
/// <param name="Buffer">The pool.</param>
/// <param name="Shape">Its geometry.</param>
internal sealed record KvCacheBinding(DeviceBuffer Buffer, KvCacheShape Shape);

/// <summary>How a block computes attention: dense causal over B x T rows, or paged over a KV cache.</summary>
internal readonly struct AttentionCall
{
    public int B { get; private init; }

    public int T { get; private init; }

    public KvCacheBinding? Cache { get; private init; }

    public Tensor Slots { get; private init; }          // [N] cache slot of each row

    public Tensor BlockTables { get; private init; }    // [S, MaxBlocks]

    public Tensor RowSequence { get; private init; }    // [N] block-table row of each row

    public int MaxBlocks { get; private init; }

    public static AttentionCall Dense(int b, int t) => new() { B = b, T = t };

    public static AttentionCall Paged(KvCacheBinding cache, Tensor slots, Tensor blockTables, Tensor rowSequence, int maxBlocks) =>
        new() { Cache = cache, Slots = slots, BlockTables = blockTables, RowSequence = rowSequence, MaxBlocks = maxBlocks };
}

/// <summary>
/// Buffers of an inference forward over up to <see cref="Capacity"/> rows (prefill and decode rows
/// of many sequences mixed) and of sampling up to <see cref="SampleCapacity"/> of them. No backward, so
/// one set of block activations serves every layer and the residual stream is updated in place.
/// </summary>
internal sealed class InferencePlan : IDisposable
{
    private readonly DeviceBuffer floats;
    private readonly DeviceBuffer ints;
    private readonly QkNormPlan? qkNorm;

    public InferencePlan(Accelerator acc, ModelConfig config, int capacity, int sampleCapacity, int maxSequences, int maxBlocks)
    {
        Capacity = capacity;
        SampleCapacity = sampleCapacity;
        MaxSequences = maxSequences;
        MaxBlocks = maxBlocks;
        int r = capacity, sr = sampleCapacity, c = config.Dim;
        long offset = 0;
        var slices = new List<(long Offset, long Length)>();

        int Take(long length)
        {
            slices.Add((offset, length));
            offset += (length + 15) / 16 * 16;
            return slices.Count - 1;
        }

        int resid = Take((long)r * c), norm1 = Take((long)r * c), mean1 = Take(r), rstd1 = Take(r), qkv = Take((long)r * config.QkvDim);
        int attn = Take((long)r * config.AttnDim), lse = Take((long)r * config.Heads), mid = Take((long)r * c), norm2 = Take((long)r * c);
        int mean2 = Take(r), rstd2 = Take(r), mlpIn = Take((long)r * config.MlpInDim), act = Take((long)r * config.FfnDim);
        int gathered = Take((long)sr * c), normF = Take((long)sr * c), meanF = Take(sr), rstdF = Take(sr);
        int logits = Take((long)sr * config.VocabSize), uniforms = Take(sr), temps = Take(sr), topP = Take(sr);
        int sampleLogp = Take(sr), policyLogp = Take(sr);
        floats = acc.Allocate(offset);
        Tensor F(int i) => floats.Slice(slices[i].Offset, slices[i].Length);

        Resid = F(resid);
        qkNorm = config.QkNorm ? new QkNormPlan(acc, config, r, layers: 1, backward: false) : null;
        Layer = new LayerActivations
        {
            Norm1 = F(norm1), Norm1Mean = F(mean1), Norm1Rstd = F(rstd1), Qkv = F(qkv), Attn = F(attn), Lse = F(lse),
            ResidMid = F(mid), Norm2 = F(norm2), Norm2Mean = F(mean2), Norm2Rstd = F(rstd2), MlpIn = F(mlpIn), Act = F(act),
            QkNorm = qkNorm?.Layers[0],
        };
        Gathered = F(gathered);
        NormF = F(normF);
        NormFMean = F(meanF);
        NormFRstd = F(rstdF);
        Logits = F(logits);
        Uniforms = F(uniforms);
        Temperatures = F(temps);
        TopP = F(topP);
        SampleLogProbs = F(sampleLogp);
        PolicyLogProbs = F(policyLogp);

        long tables = (long)maxSequences * maxBlocks;
        ints = acc.Allocate((4L * r) + (2L * sr) + tables, DType.I32);
        Tokens = ints.Slice(0, r);
        Positions = ints.Slice(r, r);
        Slots = ints.Slice(2L * r, r);
        RowSequence = ints.Slice(3L * r, r);
        GatherRows = ints.Slice(4L * r, sr);
        TopK = ints.Slice((4L * r) + sr, sr);
        BlockTables = ints.Slice((4L * r) + (2L * sr), tables);
        SampledTokens = acc.Allocate(sr, DType.I32);
        Bytes = floats.Bytes + ints.Bytes + SampledTokens.Bytes + (qkNorm?.Bytes ?? 0);
    }

    /// <summary>Most rows one forward can take.</summary>
    public int Capacity { get; }

    /// <summary>Most rows one <see cref="Transformer.SampleGathered"/> can take.</summary>
    public int SampleCapacity { get; }

    /// <summary>Rows of the block-table buffer.</summary>
    public int MaxSequences { get; }

    /// <summary>Columns of the block-table buffer.</summary>
    public int MaxBlocks { get; }

    /// <summary>Device bytes held by the plan.</summary>
    public long Bytes { get; }

    public Tensor Resid { get; }              // [R, C] residual stream, updated in place layer by layer

    public LayerActivations Layer { get; }    // one block's activations, reused by every layer

    public Tensor Gathered { get; }           // [S, C] residual rows of the rows to sample

    public Tensor NormF { get; }              // [S, C]

    public Tensor NormFMean { get; }          // [S]

    public Tensor NormFRstd { get; }          // [S]

    public Tensor Logits { get; }             // [S, V]

    public Tensor Uniforms { get; }           // [S]

    public Tensor Temperatures { get; }       // [S]

    public Tensor TopP { get; }               // [S]

    public Tensor SampleLogProbs { get; }     // [S]

    public Tensor PolicyLogProbs { get; }     // [S]

    public Tensor Tokens { get; }             // [R] int

    public Tensor Positions { get; }          // [R] int

    public Tensor Slots { get; }              // [R] int

    public Tensor RowSequence { get; }        // [R] int

    public Tensor GatherRows { get; }         // [S] int

    public Tensor TopK { get; }               // [S] int

    public Tensor BlockTables { get; }        // [MaxSequences, MaxBlocks] int

    public DeviceBuffer SampledTokens { get; } // [S] int

    public void Dispose()
    {
        floats.Dispose();
        ints.Dispose();
        SampledTokens.Dispose();
        qkNorm?.Dispose();
    }
}
