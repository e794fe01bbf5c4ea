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

/// <summary>The normalisation of a block's inputs and of the final hidden state.</summary>
internal enum NormKind
{
    /// <summary>LayerNorm with weight and bias.</summary>
    LayerNorm,

    /// <summary>RMSNorm with weight only.</summary>
    RmsNorm,
}

/// <summary>How positions enter the model.</summary>
internal enum PositionKind
{
    /// <summary>A learned position embedding added to the token embedding.</summary>
    Learned,

    /// <summary>Rotary embeddings on queries and keys.</summary>
    Rope,
}

/// <summary>The feed-forward block.</summary>
internal enum MlpKind
{
    /// <summary>up, tanh GELU, down.</summary>
    Gelu,

    /// <summary>silu(gate) * up, down (the first projection holds gate | up).</summary>
    SwiGlu,
}

/// <summary>Which Hugging Face names a family's config.json keys and tensors use.</summary>
internal enum HfNaming
{
    /// <summary>GPT-2: n_embd, h.{l}.attn.c_attn (Conv1D, [in, out]) ...</summary>
    Gpt2,

    /// <summary>Llama and its descendants: hidden_size, model.layers.{l}.self_attn.q_proj ...</summary>
    Llama,
}

/// <summary>
/// One model family as a set of features. Adding a family that these features cover is one row of
/// <see cref="ModelFamilies.All"/> (plus its enum value).
/// </summary>
/// <param name="Family">The family.</param>
/// <param name="ModelType">config.json's model_type.</param>
/// <param name="Architecture">config.json's architectures entry.</param>
/// <param name="Naming">HF key and tensor names.</param>
/// <param name="Norm">Norm kind.</param>
/// <param name="Positions">Position encoding.</param>
/// <param name="Mlp">Feed-forward kind.</param>
/// <param name="QkvBias">q/k/v biases whatever config.json says (GPT-2, Qwen2).</param>
/// <param name="AttentionBiasKey">config.json's attention_bias puts biases on q, k, v and o (Llama, Qwen3).</param>
/// <param name="MlpBiasKey">config.json's mlp_bias puts biases on the MLP projections (Llama).</param>
/// <param name="QkNorm">RMSNorm on each query and key head before RoPE (Qwen3).</param>
internal sealed record ModelFamilyInfo(ModelFamily Family, string ModelType, string Architecture, HfNaming Naming, NormKind Norm,
    PositionKind Positions, MlpKind Mlp, bool QkvBias, bool AttentionBiasKey, bool MlpBiasKey, bool QkNorm);

/// <summary>The families the engine implements, described by their features.</summary>
internal static class ModelFamilies
{
    public static readonly ModelFamilyInfo[] All =
    [
        new(ModelFamily.Gpt2, "gpt2", "GPT2LMHeadModel", HfNaming.Gpt2, NormKind.LayerNorm, PositionKind.Learned, MlpKind.Gelu,
            QkvBias: true, AttentionBiasKey: false, MlpBiasKey: false, QkNorm: false),
        new(ModelFamily.Llama, "llama", "LlamaForCausalLM", HfNaming.Llama, NormKind.RmsNorm, PositionKind.Rope, MlpKind.SwiGlu,
            QkvBias: false, AttentionBiasKey: true, MlpBiasKey: true, QkNorm: false),
        new(ModelFamily.Qwen2, "qwen2", "Qwen2ForCausalLM", HfNaming.Llama, NormKind.RmsNorm, PositionKind.Rope, MlpKind.SwiGlu,
            QkvBias: true, AttentionBiasKey: false, MlpBiasKey: false, QkNorm: false),
        new(ModelFamily.Qwen3, "qwen3", "Qwen3ForCausalLM", HfNaming.Llama, NormKind.RmsNorm, PositionKind.Rope, MlpKind.SwiGlu,
            QkvBias: false, AttentionBiasKey: true, MlpBiasKey: false, QkNorm: true),
    ];

    /// <summary>The row of <paramref name="family"/> (rows are in enum order; read on hot paths, so no search).</summary>
    public static ModelFamilyInfo Of(ModelFamily family) =>
        (uint)family < (uint)All.Length && All[(int)family].Family == family
            ? All[(int)family]
            : throw new ArgumentOutOfRangeException(nameof(family), family, "no row in ModelFamilies.All (rows must be in enum order)");

    /// <summary>The row whose model_type is <paramref name="modelType"/>, or null.</summary>
    public static ModelFamilyInfo? ByModelType(string modelType) => Array.Find(All, f => f.ModelType == modelType);

    /// <summary>The model_type values, for error messages.</summary>
    public static string ModelTypes => string.Join(", ", All.Select(f => f.ModelType));
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

    /// <summary>The family's features.</summary>
    public ModelFamilyInfo Features => ModelFamilies.Of(Family);

    /// <summary>LayerNorm (with biases) or RMSNorm.</summary>
    public NormKind Norm => Features.Norm;

    /// <summary>Learned positions or RoPE.</summary>
    public PositionKind Positions => Features.Positions;

    /// <summary>GELU or SwiGLU feed-forward.</summary>
    public MlpKind Mlp => Features.Mlp;

    /// <summary>HF names of config keys and tensors.</summary>
    public HfNaming Naming => Features.Naming;

    /// <summary>Width of the fused q|k|v projection: (Hq + 2 Hkv) * D.</summary>
    public int QkvDim => (Heads + 2 * KvHeads) * HeadDim;

    /// <summary>Width of the attention output before the output projection: Hq * D.</summary>
    public int AttnDim => Heads * HeadDim;

    /// <summary>Width of the first MLP projection: F for GELU, 2F (gate | up) for SwiGLU.</summary>
    public int MlpInDim => Mlp == MlpKind.SwiGlu ? 2 * FfnDim : FfnDim;

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

        if (Naming == HfNaming.Gpt2 && Heads * HeadDim != Dim)
        {
            throw new EngineException($"GPT-2 needs n_embd ({Dim}) divisible by n_head ({Heads})");
        }

        if (Positions == PositionKind.Rope && HeadDim % 2 != 0)
        {
            throw new EngineException($"RoPE needs an even head size, got {HeadDim}");
        }

        if (QkNorm && Positions != PositionKind.Rope)
        {
            throw new EngineException("q/k norms need the Llama-family layout (GPT-2 has none)");
        }

        if (!(NormEps > 0) || float.IsInfinity(NormEps))
        {
            throw new EngineException($"norm epsilon must be positive, got {NormEps}");
        }

        if (Positions == PositionKind.Rope && !(RopeTheta > 0))
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
        QkvBias = ModelFamilies.Of(family).QkvBias,
        AttnOutBias = false,
        MlpBias = false,
        QkNorm = ModelFamilies.Of(family).QkNorm,
    };

    private static void Positive(int value, string what)
    {
        if (value <= 0)
        {
            throw new EngineException($"{what} must be positive, got {value}");
        }
    }
}
