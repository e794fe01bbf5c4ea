using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;

namespace Engine.Model;

/// <summary>Reads and writes Hugging Face <c>config.json</c> for model_type gpt2, llama, qwen2 and qwen3.</summary>
internal static class HfConfig
{
    /// <summary>Parses a config.json text; throws an <see cref="EngineException"/> naming the problem.</summary>
    public static ModelConfig Parse(string json, string source = "config.json")
    {
        JsonObject root = IO.UserJson.ParseObject(json, source);

        string modelType = GetString(root, "model_type", source) ??
                           throw new EngineException($"{source}: missing model_type");
        ModelFamilyInfo family = ModelFamilies.ByModelType(modelType)
            ?? throw new EngineException($"{source}: unknown model_type '{modelType}' (supported: {ModelFamilies.ModelTypes})");
        ModelConfig config = family.Naming == HfNaming.Gpt2 ? ParseGpt2(root, source) : ParseLlama(root, family, source);
        try
        {
            config.Validate();
        }
        catch (EngineException e)
        {
            throw new EngineException($"{source}: {e.Message}");
        }

        return config;
    }

    /// <summary>
    /// Writes the config as HF would. Keys of <paramref name="original"/> (the file a model was
    /// loaded from) are kept, so unknown settings survive a load/save round trip.
    /// </summary>
    /// <param name="config">The model's configuration.</param>
    /// <param name="original">The config.json object the model was loaded from, or null.</param>
    /// <param name="torchDType">The weights' stored type as torch names it (float32, bfloat16, float16).</param>
    public static string ToJson(ModelConfig config, JsonObject? original = null, string torchDType = "float32")
    {
        var o = original is null ? new JsonObject() : (JsonObject)original.DeepClone();
        ModelFamilyInfo family = config.Features;
        o["model_type"] = family.ModelType;
        o["architectures"] ??= new JsonArray(family.Architecture);
        if (family.Naming == HfNaming.Gpt2)
        {
            o["vocab_size"] = config.VocabSize;
            o["n_embd"] = config.Dim;
            o["n_layer"] = config.Layers;
            o["n_head"] = config.Heads;
            o["n_positions"] = config.MaxPositions;
            o["n_ctx"] = config.MaxPositions;
            o["n_inner"] = config.FfnDim == 4 * config.Dim ? null : config.FfnDim;
            o["layer_norm_epsilon"] = config.NormEps;
            o["activation_function"] ??= "gelu_new";
            o["tie_word_embeddings"] = true;
        }
        else
        {
            o["vocab_size"] = config.VocabSize;
            o["hidden_size"] = config.Dim;
            o["intermediate_size"] = config.FfnDim;
            o["num_hidden_layers"] = config.Layers;
            o["num_attention_heads"] = config.Heads;
            o["num_key_value_heads"] = config.KvHeads;
            o["head_dim"] = config.HeadDim;
            o["max_position_embeddings"] = config.MaxPositions;
            o["rms_norm_eps"] = config.NormEps;
            o["rope_theta"] = config.RopeTheta;
            o["tie_word_embeddings"] = config.TiedEmbeddings;
            o["hidden_act"] = "silu";
            if (family.AttentionBiasKey)
            {
                o["attention_bias"] = config.QkvBias;
            }

            if (family.MlpBiasKey)
            {
                o["mlp_bias"] = config.MlpBias;
            }
        }

        if (config.BosTokenId is int bos)
        {
            o["bos_token_id"] = bos;
        }

        if (config.EosTokenIds.Count == 1)
        {
            o["eos_token_id"] = config.EosTokenIds[0];
        }
        else if (config.EosTokenIds.Count > 1)
        {
            o["eos_token_id"] = new JsonArray(config.EosTokenIds.Select(i => (JsonNode?)i).ToArray());
        }

        o["torch_dtype"] = torchDType;
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static ModelConfig ParseGpt2(JsonObject o, string source)
    {
        int dim = GetInt(o, "n_embd", source) ?? 768;
        int heads = GetInt(o, "n_head", source) ?? 12;
        string act = GetString(o, "activation_function", source) ?? "gelu_new";
        if (act is not ("gelu_new" or "gelu_pytorch_tanh" or "gelu_fast"))
        {
            throw new EngineException($"{source}: activation_function '{act}' is not supported (the engine implements the tanh GELU, gelu_new)");
        }

        return new ModelConfig
        {
            Family = ModelFamily.Gpt2,
            VocabSize = GetInt(o, "vocab_size", source) ?? 50257,
            Dim = dim,
            Layers = GetInt(o, "n_layer", source) ?? 12,
            Heads = heads,
            KvHeads = heads,
            HeadDim = heads > 0 ? dim / heads : 0,
            FfnDim = GetInt(o, "n_inner", source) ?? 4 * dim,
            MaxPositions = GetInt(o, "n_positions", source) ?? GetInt(o, "n_ctx", source) ?? 1024,
            NormEps = (float)(GetDouble(o, "layer_norm_epsilon", source) ?? 1e-5),
            TiedEmbeddings = true,
            QkvBias = true,
            AttnOutBias = true,
            MlpBias = true,
            BosTokenId = GetInt(o, "bos_token_id", source),
            EosTokenIds = GetIntOrList(o, "eos_token_id", source),
        };
    }

    private static ModelConfig ParseLlama(JsonObject o, ModelFamilyInfo family, string source)
    {
        int dim = Require(GetInt(o, "hidden_size", source), "hidden_size", source);
        int heads = Require(GetInt(o, "num_attention_heads", source), "num_attention_heads", source);
        string act = GetString(o, "hidden_act", source) ?? "silu";
        if (act != "silu")
        {
            throw new EngineException($"{source}: hidden_act '{act}' is not supported (the engine implements SwiGLU with silu)");
        }

        if (GetBool(o, "use_sliding_window", source) == true)
        {
            throw new EngineException($"{source}: use_sliding_window = true is not supported");
        }

        double theta = GetDouble(o, "rope_theta", source)
                       ?? (o["rope_parameters"] is JsonObject rp ? GetDouble(rp, "rope_theta", source) : null)
                       ?? 10000;
        bool attentionBias = family.AttentionBiasKey && (GetBool(o, "attention_bias", source) ?? false);
        return new ModelConfig
        {
            Family = family.Family,
            VocabSize = Require(GetInt(o, "vocab_size", source), "vocab_size", source),
            Dim = dim,
            Layers = Require(GetInt(o, "num_hidden_layers", source), "num_hidden_layers", source),
            Heads = heads,
            KvHeads = GetInt(o, "num_key_value_heads", source) ?? heads,
            HeadDim = GetInt(o, "head_dim", source) ?? (heads > 0 ? dim / heads : 0),
            FfnDim = Require(GetInt(o, "intermediate_size", source), "intermediate_size", source),
            MaxPositions = GetInt(o, "max_position_embeddings", source) ?? 2048,
            NormEps = (float)(GetDouble(o, "rms_norm_eps", source) ?? 1e-6),
            RopeTheta = theta,
            RopeScaling = ParseRopeScaling(o, source),
            TiedEmbeddings = GetBool(o, "tie_word_embeddings", source) ?? false,
            // The table says which config keys put biases where (Qwen2: always q/k/v; Llama, Qwen3: attention_bias on q/k/v/o).
            QkvBias = family.QkvBias || attentionBias,
            AttnOutBias = attentionBias,
            MlpBias = family.MlpBiasKey && (GetBool(o, "mlp_bias", source) ?? false),
            QkNorm = family.QkNorm,
            BosTokenId = GetInt(o, "bos_token_id", source),
            EosTokenIds = GetIntOrList(o, "eos_token_id", source),
        };
    }

    private static RopeScaling? ParseRopeScaling(JsonObject o, string source)
    {
        if (o["rope_scaling"] is not JsonObject s)
        {
            return null;
        }

        string type = GetString(s, "rope_type", source) ?? GetString(s, "type", source) ?? "default";
        double factor = GetDouble(s, "factor", source) ?? 1;
        return type switch
        {
            "default" => null,
            "linear" => new RopeScaling("linear", factor, 0, 0, 0),
            "llama3" => new RopeScaling("llama3", factor, GetDouble(s, "low_freq_factor", source) ?? 1,
                GetDouble(s, "high_freq_factor", source) ?? 4,
                GetInt(s, "original_max_position_embeddings", source) ?? 8192),
            _ => throw new EngineException($"{source}: rope_scaling type '{type}' is not supported (supported: linear, llama3)"),
        };
    }

    private static int Require(int? value, string key, string source) =>
        value ?? throw new EngineException($"{source}: missing {key}");

    private static string? GetString(JsonObject o, string key, string source) =>
        o[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            _ => throw new EngineException($"{source}: {key} must be a string"),
        };

    private static int? GetInt(JsonObject o, string key, string source)
    {
        double? d = GetDouble(o, key, source);
        if (d is null)
        {
            return null;
        }

        if (d != Math.Floor(d.Value) || d < int.MinValue || d > int.MaxValue)
        {
            throw new EngineException($"{source}: {key} must be an integer, got {d.Value.ToString(CultureInfo.InvariantCulture)}");
        }

        return (int)d.Value;
    }

    private static double? GetDouble(JsonObject o, string key, string source) =>
        o[key] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.GetValue<double>(),
            _ => throw new EngineException($"{source}: {key} must be a number"),
        };

    private static bool? GetBool(JsonObject o, string key, string source) =>
        o[key] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
            _ => throw new EngineException($"{source}: {key} must be true or false"),
        };

    private static IReadOnlyList<int> GetIntOrList(JsonObject o, string key, string source) =>
        o[key] switch
        {
            null => [],
            JsonArray a => a.Select(n => n is JsonValue v && v.GetValueKind() == JsonValueKind.Number
                ? v.GetValue<int>()
                : throw new EngineException($"{source}: {key} must hold integers")).ToArray(),
            _ => GetInt(o, key, source) is int i ? [i] : [],
        };
}
