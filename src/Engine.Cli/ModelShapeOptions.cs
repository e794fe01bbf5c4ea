using System.CommandLine;
using Engine.Core;
using Engine.Model;

namespace Engine.Cli;

/// <summary>The model-shape flags shared by bench-train and bench-generate.</summary>
internal sealed class ModelShapeOptions
{
    public Option<string> Family { get; } = new("--family") { Description = "gpt2, llama, qwen2 or qwen3", Required = true };

    public Option<int> Layers { get; } = new("--layers") { Description = "transformer blocks L", Required = true };

    public Option<int> Dim { get; } = new("--dim") { Description = "model width C", Required = true };

    public Option<int> Heads { get; } = new("--heads") { Description = "query heads H", Required = true };

    public Option<int?> KvHeads { get; } = new("--kv-heads") { Description = "key/value heads (default: H)" };

    public Option<int> Vocab { get; } = new("--vocab") { Description = "vocabulary size V", Required = true };

    public Option<int?> Ffn { get; } = new("--ffn") { Description = "feed-forward width (default: 4C for gpt2, 8C/3 rounded to 64 otherwise)" };

    public Option<string?> Device { get; } = new("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto (default: ENGINE_DEVICE, then cpu)" };

    public void AddTo(Command command)
    {
        command.Options.Add(Family);
        command.Options.Add(Layers);
        command.Options.Add(Dim);
        command.Options.Add(Heads);
        command.Options.Add(KvHeads);
        command.Options.Add(Vocab);
        command.Options.Add(Ffn);
        command.Options.Add(Device);
    }

    /// <summary>Builds and validates the config, with <paramref name="maxPositions"/> positions.</summary>
    public ModelConfig Build(ParseResult r, int maxPositions)
    {
        string family = r.GetValue(Family)!.ToLowerInvariant();
        int dim = r.GetValue(Dim), heads = r.GetValue(Heads), layers = r.GetValue(Layers), vocab = r.GetValue(Vocab);
        if (heads <= 0 || dim <= 0 || dim % heads != 0)
        {
            throw new EngineException($"--dim ({dim}) must be a positive multiple of --heads ({heads})");
        }

        int kv = r.GetValue(KvHeads) ?? heads;
        ModelConfig config = family switch
        {
            "gpt2" when kv != heads => throw new EngineException("gpt2 has no grouped-query attention: --kv-heads must equal --heads"),
            "gpt2" => ModelConfig.Gpt2(vocab, dim, layers, heads, maxPositions) with { FfnDim = r.GetValue(Ffn) ?? 4 * dim },
            "llama" or "qwen2" or "qwen3" => ModelConfig.LlamaFamily(ModelFamilies.ByModelType(family)!.Family, vocab, dim, layers,
                heads, kv, r.GetValue(Ffn) ?? DefaultSwiGluWidth(dim), maxPositions, tied: family != "llama"),
            _ => throw new EngineException($"unknown --family '{family}' (expected gpt2, llama, qwen2 or qwen3)"),
        };
        config.Validate();
        return config;
    }

    private static int DefaultSwiGluWidth(int dim) => Math.Max(64, (8 * dim / 3 + 63) / 64 * 64);
}
