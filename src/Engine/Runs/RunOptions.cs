using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Config;
using Engine.Core;
using Engine.Model;

namespace Engine;

/// <summary>Which task a run trains on.</summary>
public sealed record TaskOptions
{
    /// <summary>A built-in task: addition, sorting or countdown.</summary>
    public string Name { get; init; } = "addition";

    /// <summary>Seed of the task's example generator.</summary>
    public ulong Seed { get; init; }

    /// <summary>Task options as comma-separated key=value pairs, e.g. "min_digits=1,max_digits=3".</summary>
    public string Parameters { get; init; } = "";

    /// <summary>Creates the task.</summary>
    public ITask Create()
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string pair in Parameters.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new EngineException($"task parameters: '{pair}' is not key=value");
            }

            options[pair[..eq].Trim()] = pair[(eq + 1)..].Trim();
        }

        return BuiltInTasks.Create(Name, Seed, options);
    }
}

/// <summary>The policy a run starts from: a new model of this shape, or a checkpoint.</summary>
public sealed record ModelOptions
{
    /// <summary>A Hugging Face checkpoint directory to start from; empty: a new model of the shape below.</summary>
    public string InitFrom { get; init; } = "";

    /// <summary>gpt2, llama or qwen2.</summary>
    public string Family { get; init; } = "gpt2";

    /// <summary>Transformer blocks.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Model width.</summary>
    public int Dim { get; init; } = 128;

    /// <summary>Attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads (0: as many as heads).</summary>
    public int KvHeads { get; init; }

    /// <summary>Feed-forward width (0: 4C for gpt2, about 8C/3 otherwise).</summary>
    public int Ffn { get; init; }

    /// <summary>Longest sequence, prompt plus response.</summary>
    public int MaxPositions { get; init; } = 32;

    /// <summary>Seed of the random initialisation.</summary>
    public ulong InitSeed { get; init; } = 1;

    /// <summary>Standard deviation of the random initialisation.</summary>
    public float InitStd { get; init; } = 0.02f;

    internal ModelConfig Build(int vocab)
    {
        if (Heads <= 0 || Dim <= 0 || Dim % Heads != 0)
        {
            throw new EngineException($"model: dim ({Dim}) must be a positive multiple of heads ({Heads})");
        }

        int kv = KvHeads == 0 ? Heads : KvHeads;
        ModelConfig config = Family switch
        {
            "gpt2" when kv != Heads => throw new EngineException("model: gpt2 has no grouped-query attention (kv_heads must equal heads)"),
            "gpt2" => ModelConfig.Gpt2(vocab, Dim, Layers, Heads, MaxPositions) with { FfnDim = Ffn > 0 ? Ffn : 4 * Dim },
            "llama" or "qwen2" => ModelConfig.LlamaFamily(Family == "llama" ? ModelFamily.Llama : ModelFamily.Qwen2, vocab, Dim, Layers, Heads, kv,
                Ffn > 0 ? Ffn : Math.Max(64, (8 * Dim / 3 + 63) / 64 * 64), MaxPositions, tied: true),
            _ => throw new EngineException($"model: unknown family '{Family}' (expected gpt2, llama or qwen2)"),
        };
        config.Validate();
        return config;
    }
}

/// <summary>
/// Everything a training run needs: task, starting model, the SFT and RL phases (either may be
/// skipped with 0 steps) and the device. Read from a JSON config file with sections "task",
/// "model", "sft", "rl", "kd" (KDRL's distillation term, <see cref="RlOptions.Distillation"/>), "guide"
/// (mixed-policy DAPO's guide, <see cref="RlOptions.Guidance"/>) and the key "device", and overridden from the command line.
/// </summary>
public sealed record RunOptions
{
    /// <summary>Task settings.</summary>
    public TaskOptions Task { get; init; } = new();

    /// <summary>Model settings.</summary>
    public ModelOptions Model { get; init; } = new();

    /// <summary>SFT phase; null skips it.</summary>
    public SftOptions? Sft { get; init; } = new();

    /// <summary>RL phase; null skips it.</summary>
    public RlOptions? Rl { get; init; } = RlOptions.Dapo();

    /// <summary>Device spec (cpu, opencl[:N], cuda[:N], auto); empty uses ENGINE_DEVICE, then the CPU.</summary>
    public string Device { get; init; } = "";

    /// <summary>Multi-task SFT over several tasks with a data mixer (replaces <see cref="Task"/> when set); null: one task.</summary>
    public MixOptions? Mix { get; init; }

    /// <summary>The options as a config-file JSON object.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["task"] = OptionsBinder.ToJson(Task),
            ["model"] = OptionsBinder.ToJson(Model),
            ["device"] = Device,
        };
        if (Sft is not null)
        {
            o["sft"] = OptionsBinder.ToJson(Sft);
        }

        if (Mix is not null)
        {
            o["mix"] = OptionsBinder.ToJson(Mix);
        }

        if (Rl is not null)
        {
            o["rl"] = OptionsBinder.ToJson(Rl);
            if (Rl.Distillation is not null)
            {
                o["kd"] = OptionsBinder.ToJson(Rl.Distillation);
            }

            if (Rl.Guidance is not null)
            {
                o["guide"] = OptionsBinder.ToJson(Rl.Guidance);
            }
        }

        return o;
    }

    /// <summary>
    /// These options with a config file's sections applied (unknown sections or settings, wrong
    /// types: <see cref="EngineException"/> naming the file).
    /// </summary>
    public RunOptions WithJson(JsonObject json, string source)
    {
        RunOptions r = this;
        foreach (var (key, value) in json)
        {
            JsonObject? section = value as JsonObject;
            r = key switch
            {
                "task" => r with { Task = OptionsBinder.Apply(r.Task, Section(section, key, source), $"{source} [task]") },
                "model" => r with { Model = OptionsBinder.Apply(r.Model, Section(section, key, source), $"{source} [model]") },
                "sft" => r with { Sft = value is null ? null : OptionsBinder.Apply(r.Sft ?? new SftOptions(), Section(section, key, source), $"{source} [sft]") },
                "rl" => r with { Rl = value is null ? null : OptionsBinder.Apply(r.Rl ?? RlOptions.Dapo(), Section(section, key, source), $"{source} [rl]") },
                "kd" => r with
                {
                    Rl = (r.Rl ?? RlOptions.Dapo()) with
                    {
                        Distillation = value is null ? null
                            : OptionsBinder.Apply(r.Rl?.Distillation ?? new KdOptions(), Section(section, key, source), $"{source} [kd]"),
                    },
                },
                "guide" => r with
                {
                    Rl = (r.Rl ?? RlOptions.Dapo()) with
                    {
                        Guidance = value is null ? null
                            : OptionsBinder.Apply(r.Rl?.Guidance ?? new GuideOptions(), Section(section, key, source), $"{source} [guide]"),
                    },
                },
                "mix" => r with { Mix = value is null ? null : OptionsBinder.Apply(r.Mix ?? new MixOptions(), Section(section, key, source), $"{source} [mix]") },
                "device" => r with { Device = value is JsonValue v && v.TryGetValue(out string? s) ? s : throw new EngineException($"{source}: device must be a string") },
                _ => throw new EngineException($"{source}: unknown section '{key}' (expected task, model, sft, rl, kd, guide, mix, device)"),
            };
        }

        return r;
    }

    /// <summary>Validates every section.</summary>
    public void Validate()
    {
        _ = Task.Create();
        Mix?.Validate();
        Sft?.Validate();
        Rl?.Validate();
        if (Rl is not null && Model.InitFrom.Length == 0 && Model.MaxPositions < 2)
        {
            throw new EngineException("model: max_positions must be at least 2");
        }
    }

    private static JsonObject Section(JsonObject? section, string key, string source) =>
        section ?? throw new EngineException($"{source}: '{key}' must be an object of settings");

    /// <summary>Reads a config file.</summary>
    public static RunOptions FromFile(string path, RunOptions? defaults = null)
    {
        if (!File.Exists(path))
        {
            throw new EngineException($"{path}: config file not found");
        }

        return (defaults ?? new RunOptions()).WithJson(IO.UserJson.ParseObject(File.ReadAllText(path), path), path);
    }

    internal static string Format(double value) => value.ToString("F3", CultureInfo.InvariantCulture);
}
