namespace Engine.Model;

/// <summary>One parameter tensor inside the flat parameter buffer.</summary>
/// <param name="Name">Internal name (e.g. <c>layers.3.qkv.weight</c>).</param>
/// <param name="Offset">Offset in elements within the flat buffer.</param>
/// <param name="Shape">Shape in the engine's layout ([out, in] for matrices).</param>
/// <param name="Decay">Whether AdamW applies weight decay (matrices and embeddings).</param>
internal sealed record ParamTensor(string Name, long Offset, int[] Shape, bool Decay)
{
    /// <summary>Number of elements.</summary>
    public long Length => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>The parameters of one transformer block; absent tensors are null.</summary>
internal sealed class LayerParams
{
    public required ParamTensor Norm1Weight { get; init; }       // [C]

    public ParamTensor? Norm1Bias { get; init; }                // [C] (LayerNorm)

    public required ParamTensor QkvWeight { get; init; }        // [(Hq + 2Hkv) D, C]

    public ParamTensor? QkvBias { get; init; }                  // [(Hq + 2Hkv) D]

    public ParamTensor? QNormWeight { get; init; }              // [D] (q/k norm)

    public ParamTensor? KNormWeight { get; init; }              // [D] (q/k norm)

    public required ParamTensor AttnOutWeight { get; init; }    // [C, Hq D]

    public ParamTensor? AttnOutBias { get; init; }              // [C]

    public required ParamTensor Norm2Weight { get; init; }      // [C]

    public ParamTensor? Norm2Bias { get; init; }                // [C]

    public required ParamTensor MlpInWeight { get; init; }      // [F, C] (GELU) or [2F, C] (gate | up)

    public ParamTensor? MlpInBias { get; init; }                // [F] or [2F]

    public required ParamTensor MlpOutWeight { get; init; }     // [C, F]

    public ParamTensor? MlpOutBias { get; init; }               // [C]
}

/// <summary>
/// Where every parameter lives in the one flat parameter buffer (and, identically, in the
/// gradient and optimizer-state buffers). The engine's layout fuses what HF splits: q, k and v
/// rows form one [(Hq + 2Hkv) D, C] matrix, gate and up one [2F, C] matrix, and every matrix is
/// [out, in] (GPT-2's Conv1D weights are transposed on load). Tensors with weight decay come
/// first so the optimizer updates them in one contiguous range.
/// </summary>
internal sealed class ParameterLayout
{
    private readonly List<ParamTensor> tensors = [];

    public ParameterLayout(ModelConfig config)
    {
        Config = config;
        int c = config.Dim, v = config.VocabSize;
        var pending = new List<(string Name, int[] Shape, bool Decay)>();

        void Add(string name, bool decay, params int[] shape) => pending.Add((name, shape, decay));

        Add("wte", true, v, c);
        if (config.Positions == PositionKind.Learned)
        {
            Add("wpe", true, config.MaxPositions, c);
        }

        if (!config.TiedEmbeddings)
        {
            Add("lm_head", true, v, c);
        }

        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"layers.{l}.";
            Add(p + "norm1.weight", false, c);
            if (config.Norm == NormKind.LayerNorm)
            {
                Add(p + "norm1.bias", false, c);
            }

            Add(p + "qkv.weight", true, config.QkvDim, c);
            if (config.QkvBias)
            {
                Add(p + "qkv.bias", false, config.QkvDim);
            }

            if (config.QkNorm)
            {
                Add(p + "q_norm.weight", false, config.HeadDim);
                Add(p + "k_norm.weight", false, config.HeadDim);
            }

            Add(p + "attn_out.weight", true, c, config.AttnDim);
            if (config.AttnOutBias)
            {
                Add(p + "attn_out.bias", false, c);
            }

            Add(p + "norm2.weight", false, c);
            if (config.Norm == NormKind.LayerNorm)
            {
                Add(p + "norm2.bias", false, c);
            }

            Add(p + "mlp_in.weight", true, config.MlpInDim, c);
            if (config.MlpBias)
            {
                Add(p + "mlp_in.bias", false, config.MlpInDim);
            }

            Add(p + "mlp_out.weight", true, c, config.FfnDim);
            if (config.MlpBias)
            {
                Add(p + "mlp_out.bias", false, c);
            }
        }

        Add("norm_f.weight", false, c);
        if (config.Norm == NormKind.LayerNorm)
        {
            Add("norm_f.bias", false, c);
        }

        long offset = 0;
        foreach (var (name, shape, decay) in pending.Where(t => t.Decay).Concat(pending.Where(t => !t.Decay)))
        {
            // Each tensor starts on a 64-byte boundary so SIMD kernels see aligned rows.
            var t = new ParamTensor(name, offset, shape, decay);
            tensors.Add(t);
            offset += (t.Length + 15) / 16 * 16;
            if (!decay && DecayLength == 0)
            {
                DecayLength = t.Offset;
            }
        }

        TotalLength = offset;
        if (DecayLength == 0)
        {
            DecayLength = TotalLength;
        }

        ByName = tensors.ToDictionary(t => t.Name);
        Wte = ByName["wte"];
        Wpe = ByName.GetValueOrDefault("wpe");
        LmHead = ByName.GetValueOrDefault("lm_head");
        FinalNormWeight = ByName["norm_f.weight"];
        FinalNormBias = ByName.GetValueOrDefault("norm_f.bias");
        Layers = new LayerParams[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"layers.{l}.";
            Layers[l] = new LayerParams
            {
                Norm1Weight = ByName[p + "norm1.weight"],
                Norm1Bias = ByName.GetValueOrDefault(p + "norm1.bias"),
                QkvWeight = ByName[p + "qkv.weight"],
                QkvBias = ByName.GetValueOrDefault(p + "qkv.bias"),
                QNormWeight = ByName.GetValueOrDefault(p + "q_norm.weight"),
                KNormWeight = ByName.GetValueOrDefault(p + "k_norm.weight"),
                AttnOutWeight = ByName[p + "attn_out.weight"],
                AttnOutBias = ByName.GetValueOrDefault(p + "attn_out.bias"),
                Norm2Weight = ByName[p + "norm2.weight"],
                Norm2Bias = ByName.GetValueOrDefault(p + "norm2.bias"),
                MlpInWeight = ByName[p + "mlp_in.weight"],
                MlpInBias = ByName.GetValueOrDefault(p + "mlp_in.bias"),
                MlpOutWeight = ByName[p + "mlp_out.weight"],
                MlpOutBias = ByName.GetValueOrDefault(p + "mlp_out.bias"),
            };
        }
    }

    public ModelConfig Config { get; }

    /// <summary>Every tensor in buffer order.</summary>
    public IReadOnlyList<ParamTensor> Tensors => tensors;

    public IReadOnlyDictionary<string, ParamTensor> ByName { get; }

    /// <summary>Elements of the flat buffer (tensors are padded to 16 elements).</summary>
    public long TotalLength { get; }

    /// <summary>Elements at the start of the buffer that get weight decay.</summary>
    public long DecayLength { get; }

    /// <summary>Number of real parameters (without padding).</summary>
    public long ParameterCount => tensors.Sum(t => t.Length);

    public ParamTensor Wte { get; }                     // [V, C]

    public ParamTensor? Wpe { get; }                    // [P, C] (GPT-2)

    public ParamTensor? LmHead { get; }                 // [V, C] when untied

    public ParamTensor FinalNormWeight { get; }         // [C]

    public ParamTensor? FinalNormBias { get; }          // [C]

    public LayerParams[] Layers { get; }

    /// <summary>The matrix the LM head multiplies by: lm_head, or the token embedding when tied.</summary>
    public ParamTensor HeadWeight => LmHead ?? Wte;
}
