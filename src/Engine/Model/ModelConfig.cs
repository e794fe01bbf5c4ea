using Engine.Core;

namespace Engine.Model;

/// <summary>The model families the engine implements.</summary>
internal enum ModelFamily
{
    /// <summary>GPT-2: learned positions, LayerNorm, GELU (tanh), fused qkv with biases, tied head.</summary>
    Gpt2,

    /// <summary>Llama: RMSNorm, RoPE, SwiGLU, grouped-query attention.</summary>
    Llama,

    /// <summary>Qwen2: Llama with q/k/v biases.</summary>
    Qwen2,

    /// <summary>Qwen3: Llama with an RMSNorm on each query and key head before RoPE (no biases by default).</summary>
    Qwen3,
}

/// <summary>Llama 3 style RoPE frequency scaling (<c>rope_scaling.rope_type = llama3</c>) or linear scaling.</summary>
internal sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositions);

/// <summary>
/// The shape and options of one decoder-only transformer. One config covers GPT-2 and the
/// Llama family (Llama, Qwen2); the family decides norms, activation and position encoding.
/// </summary>
internal sealed record ModelConfig
{
    public required ModelFamily Family { get; init; }

    /// <summary>V: vocabulary size (rows of the embedding).</summary>
    public required int VocabSize { get; init; }

    /// <summary>C: model width.</summary>
    public required int Dim { get; init; }

    /// <summary>L: transformer blocks.</summary>
    public required int Layers { get; init; }

    /// <summary>Hq: query heads.</summary>
    public required int Heads { get; init; }

    /// <summary>Hkv: key/value heads (equal to <see cref="Heads"/> without grouped-query attention).</summary>
    public required int KvHeads { get; init; }

    /// <summary>D: head size.</summary>
    public required int HeadDim { get; init; }

    /// <summary>F: feed-forward width (GPT-2's n_inner, Llama's intermediate_size).</summary>
    public required int FfnDim { get; init; }

    /// <summary>P: longest sequence the model accepts.</summary>
    public required int MaxPositions { get; init; }

    /// <summary>Epsilon of LayerNorm / RMSNorm.</summary>
    public required float NormEps { get; init; }

    /// <summary>RoPE base (Llama family).</summary>
    public double RopeTheta { get; init; } = 10000;

    /// <summary>Optional RoPE frequency scaling.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>The LM head shares the token embedding.</summary>
    public required bool TiedEmbeddings { get; init; }

    /// <summary>Biases on the q/k/v projections (GPT-2, Qwen2, Llama with attention_bias).</summary>
    public required bool QkvBias { get; init; }

    /// <summary>Bias on the attention output projection (GPT-2, Llama with attention_bias).</summary>
    public required bool AttnOutBias { get; init; }

    /// <summary>Biases on the MLP projections (GPT-2, Llama with mlp_bias).</summary>
    public required bool MlpBias { get; init; }

    /// <summary>RMSNorm on each query and key head (weights [D], shared by the heads) after the projection and before RoPE (Qwen3).</summary>
    public bool QkNorm { get; init; }

    /// <summary>Beginning-of-sequence token id, if any.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence token ids (HF allows a list).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>GPT-2 style: LayerNorm with bias, GELU MLP and learned positions; otherwise RMSNorm, SwiGLU, RoPE.</summary>
    public bool IsGpt2 => Family == ModelFamily.Gpt2;

    /// <summary>Width of the fused q|k|v projection: (Hq + 2 Hkv) * D.</summary>
    public int QkvDim => (Heads + 2 * KvHeads) * HeadDim;

    /// <summary>Width of the attention output before the output projection: Hq * D.</summary>
    public int AttnDim => Heads * HeadDim;

    /// <summary>Width of the first MLP projection: F for GELU, 2F (gate | up) for SwiGLU.</summary>
    public int MlpInDim => IsGpt2 ? FfnDim : 2 * FfnDim;

    /// <summary>Checks the config is internally consistent; throws naming the first problem.</summary>
    public void Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(Dim, "hidden size");
        Positive(Layers, "number of layers");
        Positive(Heads, "attention heads");
        Positive(KvHeads, "key/value heads");
        Positive(HeadDim, "head size");
        Positive(FfnDim, "feed-forward size");
        Positive(MaxPositions, "max positions");
        if (Heads % KvHeads != 0)
        {
            throw new EngineException($"attention heads ({Heads}) must be a multiple of key/value heads ({KvHeads})");
        }

        if (IsGpt2 && Heads * HeadDim != Dim)
        {
            throw new EngineException($"GPT-2 needs n_embd ({Dim}) divisible by n_head ({Heads})");
        }

        if (!IsGpt2 && HeadDim % 2 != 0)
        {
            throw new EngineException($"RoPE needs an even head size, got {HeadDim}");
        }

        if (IsGpt2 && QkNorm)
        {
            throw new EngineException("q/k norms need the Llama-family layout (GPT-2 has none)");
        }

        if (!(NormEps > 0) || float.IsInfinity(NormEps))
        {
            throw new EngineException($"norm epsilon must be positive, got {NormEps}");
        }

        if (!IsGpt2 && !(RopeTheta > 0))
        {
            throw new EngineException($"rope_theta must be positive, got {RopeTheta}");
        }
    }

    /// <summary>A GPT-2 config with n_inner = 4C.</summary>
    public static ModelConfig Gpt2(int vocab, int dim, int layers, int heads, int maxPositions) => new()
    {
        Family = ModelFamily.Gpt2,
        VocabSize = vocab,
        Dim = dim,
        Layers = layers,
        Heads = heads,
        KvHeads = heads,
        HeadDim = dim / Math.Max(heads, 1),
        FfnDim = 4 * dim,
        MaxPositions = maxPositions,
        NormEps = 1e-5f,
        TiedEmbeddings = true,
        QkvBias = true,
        AttnOutBias = true,
        MlpBias = true,
    };

    /// <summary>A Llama, Qwen2 or Qwen3 config with the family's default biases and norms.</summary>
    public static ModelConfig LlamaFamily(ModelFamily family, int vocab, int dim, int layers, int heads, int kvHeads, int ffn,
        int maxPositions, bool tied, double ropeTheta = 10000) => new()
    {
        Family = family,
        VocabSize = vocab,
        Dim = dim,
        Layers = layers,
        Heads = heads,
        KvHeads = kvHeads,
        HeadDim = dim / Math.Max(heads, 1),
        FfnDim = ffn,
        MaxPositions = maxPositions,
        NormEps = 1e-6f,
        RopeTheta = ropeTheta,
        TiedEmbeddings = tied,
        QkvBias = family == ModelFamily.Qwen2,
        AttnOutBias = false,
        MlpBias = false,
        QkNorm = family == ModelFamily.Qwen3,
    };

    private static void Positive(int value, string what)
    {
        if (value <= 0)
        {
            throw new EngineException($"{what} must be positive, got {value}");
        }
    }
}
