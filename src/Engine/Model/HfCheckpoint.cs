using System.Text.Json.Nodes;
using Engine.Core;
using Engine.IO;

namespace Engine.Model;

/// <summary>
/// Where one Hugging Face tensor lives in the engine's parameter layout.
/// </summary>
/// <param name="Name">HF name without any <c>transformer.</c> prefix.</param>
/// <param name="Shape">Shape as HF stores it.</param>
/// <param name="Target">The engine tensor that holds it.</param>
/// <param name="Offset">Element offset inside <paramref name="Target"/> (q/k/v and gate/up are row ranges of fused matrices).</param>
/// <param name="Transposed">HF stores [in, out] (GPT-2 Conv1D) while the engine stores [out, in].</param>
internal sealed record HfTensor(string Name, int[] Shape, ParamTensor Target, long Offset, bool Transposed)
{
    public long Length => (long)Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// Loads and saves Hugging Face checkpoints (<c>config.json</c> + <c>model.safetensors</c> or the
/// sharded form) for gpt2, llama and qwen2, with HF names and layouts; F32, F16 and BF16 tensors
/// are read as F32.
/// </summary>
internal static class HfCheckpoint
{
    /// <summary>The HF name prefix some GPT-2 checkpoints use (GPT2LMHeadModel's state dict).</summary>
    public const string Gpt2Prefix = "transformer.";

    /// <summary>The HF tensors of a model with this layout, in a stable order.</summary>
    public static IReadOnlyList<HfTensor> Map(ParameterLayout layout)
    {
        ModelConfig cfg = layout.Config;
        var list = new List<HfTensor>();
        int c = cfg.Dim, f = cfg.FfnDim, d = cfg.HeadDim;
        if (cfg.Naming == HfNaming.Gpt2)
        {
            list.Add(new("wte.weight", [cfg.VocabSize, c], layout.Wte, 0, false));
            list.Add(new("wpe.weight", [cfg.MaxPositions, c], layout.Wpe!, 0, false));
            for (int l = 0; l < cfg.Layers; l++)
            {
                LayerParams w = layout.Layers[l];
                string p = $"h.{l}.";
                list.Add(new(p + "ln_1.weight", [c], w.Norm1Weight, 0, false));
                list.Add(new(p + "ln_1.bias", [c], w.Norm1Bias!, 0, false));
                list.Add(new(p + "attn.c_attn.weight", [c, cfg.QkvDim], w.QkvWeight, 0, true));
                list.Add(new(p + "attn.c_attn.bias", [cfg.QkvDim], w.QkvBias!, 0, false));
                list.Add(new(p + "attn.c_proj.weight", [cfg.AttnDim, c], w.AttnOutWeight, 0, true));
                list.Add(new(p + "attn.c_proj.bias", [c], w.AttnOutBias!, 0, false));
                list.Add(new(p + "ln_2.weight", [c], w.Norm2Weight, 0, false));
                list.Add(new(p + "ln_2.bias", [c], w.Norm2Bias!, 0, false));
                list.Add(new(p + "mlp.c_fc.weight", [c, f], w.MlpInWeight, 0, true));
                list.Add(new(p + "mlp.c_fc.bias", [f], w.MlpInBias!, 0, false));
                list.Add(new(p + "mlp.c_proj.weight", [f, c], w.MlpOutWeight, 0, true));
                list.Add(new(p + "mlp.c_proj.bias", [c], w.MlpOutBias!, 0, false));
            }

            list.Add(new("ln_f.weight", [c], layout.FinalNormWeight, 0, false));
            list.Add(new("ln_f.bias", [c], layout.FinalNormBias!, 0, false));
            return list;
        }

        int qRows = cfg.Heads * d, kvRows = cfg.KvHeads * d;
        list.Add(new("model.embed_tokens.weight", [cfg.VocabSize, c], layout.Wte, 0, false));
        for (int l = 0; l < cfg.Layers; l++)
        {
            LayerParams w = layout.Layers[l];
            string p = $"model.layers.{l}.";
            list.Add(new(p + "input_layernorm.weight", [c], w.Norm1Weight, 0, false));
            list.Add(new(p + "self_attn.q_proj.weight", [qRows, c], w.QkvWeight, 0, false));
            list.Add(new(p + "self_attn.k_proj.weight", [kvRows, c], w.QkvWeight, (long)qRows * c, false));
            list.Add(new(p + "self_attn.v_proj.weight", [kvRows, c], w.QkvWeight, (long)(qRows + kvRows) * c, false));
            if (w.QkvBias is not null)
            {
                list.Add(new(p + "self_attn.q_proj.bias", [qRows], w.QkvBias, 0, false));
                list.Add(new(p + "self_attn.k_proj.bias", [kvRows], w.QkvBias, qRows, false));
                list.Add(new(p + "self_attn.v_proj.bias", [kvRows], w.QkvBias, qRows + kvRows, false));
            }

            if (w.QNormWeight is not null)
            {
                list.Add(new(p + "self_attn.q_norm.weight", [d], w.QNormWeight, 0, false));
                list.Add(new(p + "self_attn.k_norm.weight", [d], w.KNormWeight!, 0, false));
            }

            list.Add(new(p + "self_attn.o_proj.weight", [c, qRows], w.AttnOutWeight, 0, false));
            if (w.AttnOutBias is not null)
            {
                list.Add(new(p + "self_attn.o_proj.bias", [c], w.AttnOutBias, 0, false));
            }

            list.Add(new(p + "post_attention_layernorm.weight", [c], w.Norm2Weight, 0, false));
            list.Add(new(p + "mlp.gate_proj.weight", [f, c], w.MlpInWeight, 0, false));
            list.Add(new(p + "mlp.up_proj.weight", [f, c], w.MlpInWeight, (long)f * c, false));
            list.Add(new(p + "mlp.down_proj.weight", [c, f], w.MlpOutWeight, 0, false));
            if (w.MlpInBias is not null)
            {
                list.Add(new(p + "mlp.gate_proj.bias", [f], w.MlpInBias, 0, false));
                list.Add(new(p + "mlp.up_proj.bias", [f], w.MlpInBias, f, false));
                list.Add(new(p + "mlp.down_proj.bias", [c], w.MlpOutBias!, 0, false));
            }
        }

        list.Add(new("model.norm.weight", [c], layout.FinalNormWeight, 0, false));
        if (layout.LmHead is not null)
        {
            list.Add(new("lm_head.weight", [cfg.VocabSize, c], layout.LmHead, 0, false));
        }

        return list;
    }

    /// <summary>Reads <c>config.json</c> of a checkpoint directory.</summary>
    public static (ModelConfig Config, JsonObject Json) ReadConfig(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
        {
            throw new EngineException($"{path}: not found (a model directory holds config.json and model.safetensors)");
        }

        string text = File.ReadAllText(path);
        ModelConfig config = HfConfig.Parse(text, path);
        return (config, (JsonObject)JsonNode.Parse(text)!);
    }

    /// <summary>
    /// Loads a checkpoint directory onto an accelerator. Every tensor the model needs must be
    /// present with its HF shape; unknown tensors are an error (known non-parameter buffers such as
    /// GPT-2's attention masks, and a tied model's redundant lm_head, are ignored).
    /// </summary>
    public static LoadedModel Load(Accelerator acc, string directory)
    {
        var (config, json) = ReadConfig(directory);
        var model = new Transformer(acc, config);
        try
        {
            var (prefix, names) = LoadInto(model, directory);
            return new LoadedModel(model, json, prefix, names);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads a checkpoint's tensors into an existing model of the same configuration (checked by
    /// names and shapes); returns the file's name prefix and tensor names.
    /// </summary>
    public static (string Prefix, IReadOnlyList<string> Names) LoadInto(Transformer model, string directory)
    {
        ModelConfig config = model.Config;
        using SafeTensorsCheckpoint file = SafeTensorsCheckpoint.Open(directory);
        string prefix = DetectPrefix(config, file);
        IReadOnlyList<HfTensor> map = Map(model.Layout);
        var known = new HashSet<string>(map.Select(t => prefix + t.Name), StringComparer.Ordinal);
        foreach (SafeTensorInfo info in file.Tensors)
        {
            if (!known.Contains(info.Name) && !IsIgnorable(config, info.Name, prefix))
            {
                throw new EngineException($"{directory}: unexpected tensor '{info.Name}' (not part of a {config.Family} model with this config.json)");
            }
        }

        foreach (HfTensor t in map)
        {
            string name = prefix + t.Name;
            if (!file.TryGetInfo(name, out SafeTensorInfo info))
            {
                throw new EngineException($"{directory}: missing tensor '{name}'");
            }

            if (!info.Shape.SequenceEqual(t.Shape))
            {
                throw new EngineException($"{directory}: tensor '{name}' has shape {info.ShapeText}, expected {SafeTensorInfo.FormatShape(t.Shape)}");
            }

            float[] data = file.ReadAsFloat32(name);
            if (t.Transposed)
            {
                data = Transpose(data, t.Shape[0], t.Shape[1]);
            }

            model.Acc.Upload(model.Params.Slice(t.Target.Offset + t.Offset, t.Length), data);
        }

        return (prefix, file.Tensors.Select(t => t.Name).ToArray());
    }

    /// <summary>
    /// Saves a model as a HF checkpoint directory (config.json + model.safetensors, sharded above
    /// <paramref name="maxShardBytes"/>), every file written atomically. The keys of
    /// <paramref name="originalConfig"/> (rope_scaling, token ids, anything the engine does not read)
    /// are kept; the weights are stored as <paramref name="dtype"/> (F32, BF16 or F16, rounded to
    /// nearest even) and config.json's torch_dtype says so.
    /// </summary>
    public static void Save(Transformer model, string directory, JsonObject? originalConfig = null, string prefix = "",
        long maxShardBytes = long.MaxValue, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        Directory.CreateDirectory(directory);
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (name, shape, data) in Export(model, model.Params))
        {
            writer.Add(prefix + name, shape, data, dtype);
        }

        SafeTensorsCheckpoint.Write(directory, writer, maxShardBytes);
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), HfConfig.ToJson(model.Config, originalConfig, ModelFiles.TorchDType(dtype)));
    }

    /// <summary>
    /// The tensors of a parameter-layout buffer (parameters or gradients) in HF names, shapes and
    /// layouts (Conv1D transposed back to [in, out]).
    /// </summary>
    public static IEnumerable<(string Name, int[] Shape, float[] Data)> Export(Transformer model, DeviceBuffer buffer)
    {
        foreach (HfTensor t in Map(model.Layout))
        {
            var data = new float[t.Length];
            model.Acc.Download(buffer.Slice(t.Target.Offset + t.Offset, t.Length), data);
            if (t.Transposed)
            {
                // Engine layout is [out, in] = [Shape[1], Shape[0]].
                data = Transpose(data, t.Shape[1], t.Shape[0]);
            }

            yield return (t.Name, t.Shape, data);
        }
    }

    /// <summary>Row-major transpose of a [rows, cols] matrix.</summary>
    private static float[] Transpose(float[] data, int rows, int cols)
    {
        var result = new float[data.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int col = 0; col < cols; col++)
            {
                result[(long)col * rows + r] = data[(long)r * cols + col];
            }
        }

        return result;
    }

    private static string DetectPrefix(ModelConfig config, SafeTensorsCheckpoint file) =>
        config.Naming == HfNaming.Gpt2 && file.Tensors.Count > 0 && file.Tensors.All(t => t.Name.StartsWith(Gpt2Prefix, StringComparison.Ordinal) ||
                                                                        t.Name == "lm_head.weight")
            && file.Tensors.Any(t => t.Name.StartsWith(Gpt2Prefix, StringComparison.Ordinal))
            ? Gpt2Prefix
            : "";

    private static bool IsIgnorable(ModelConfig config, string name, string prefix)
    {
        string bare = name.StartsWith(prefix, StringComparison.Ordinal) ? name[prefix.Length..] : name;
        return bare.EndsWith(".attn.bias", StringComparison.Ordinal) && config.Naming == HfNaming.Gpt2
               || bare.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
               || bare.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
               || (name == "lm_head.weight" && config.TiedEmbeddings);
    }
}

/// <summary>A model loaded from a HF checkpoint, with what is needed to write it back the same way.</summary>
/// <param name="Model">The model on its accelerator.</param>
/// <param name="ConfigJson">The original config.json object (unknown keys are kept on save).</param>
/// <param name="Prefix">Name prefix used by the file (<c>transformer.</c> or empty).</param>
/// <param name="FileTensorNames">Names of every tensor in the file, as stored.</param>
internal sealed record LoadedModel(Transformer Model, JsonObject ConfigJson, string Prefix, IReadOnlyList<string> FileTensorNames);
