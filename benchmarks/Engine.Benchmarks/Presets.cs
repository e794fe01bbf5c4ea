using Engine.Model;

namespace Engine.Benchmarks;

/// <summary>The model shapes the issues name, used by every model-level suite and by the PyTorch scripts.</summary>
public static class Presets
{
    /// <summary>Names usable as a <c>[Params]</c> value.</summary>
    public static readonly string[] Names = ["tiny", "small"];

    /// <summary>The environment variable that restricts the presets the suites run (e.g. <c>tiny</c>).</summary>
    public const string EnvironmentVariable = "ENGINE_BENCH_PRESETS";

    /// <summary>
    /// The presets the model-level suites run, as a <c>[ParamsSource]</c>: <see cref="Names"/>, or the
    /// comma-separated names in <c>ENGINE_BENCH_PRESETS</c> when set (the quick profile runs tiny only).
    /// </summary>
    public static IEnumerable<string> Selected
    {
        get
        {
            string[]? names = BenchmarkEnvironment.List(EnvironmentVariable);
            if (names is null)
            {
                return Names;
            }

            string? unknown = names.FirstOrDefault(n => !Names.Contains(n));
            return unknown is null ? names : throw new ArgumentException($"{EnvironmentVariable}: unknown preset {unknown}");
        }
    }

    /// <summary>Batch and sequence length of the train-step preset.</summary>
    public static (int Batch, int Seq) TrainShape(string name) => name switch
    {
        "tiny" => (8, 128),
        "small" => (4, 256),
        _ => throw new ArgumentException($"unknown preset {name}"),
    };

    /// <summary>Tokens per train step of the preset.</summary>
    public static int TrainTokens(string name)
    {
        var (b, t) = TrainShape(name);
        return b * t;
    }

    /// <summary>tiny = gpt2 L4 C256 H4 V512; small = gpt2 L6 C512 H8 V8192.</summary>
    internal static ModelConfig Config(string name, int maxPositions) => name switch
    {
        "tiny" => ModelConfig.Gpt2(vocab: 512, dim: 256, layers: 4, heads: 4, maxPositions),
        "small" => ModelConfig.Gpt2(vocab: 8192, dim: 512, layers: 6, heads: 8, maxPositions),
        _ => throw new ArgumentException($"unknown preset {name}"),
    };

    /// <summary>The same shape as command-line flags (for bench-train / bench-generate and the PyTorch scripts).</summary>
    public static string Flags(string name) => name switch
    {
        "tiny" => "--family gpt2 --layers 4 --dim 256 --heads 4 --vocab 512",
        "small" => "--family gpt2 --layers 6 --dim 512 --heads 8 --vocab 8192",
        _ => throw new ArgumentException($"unknown preset {name}"),
    };
}
