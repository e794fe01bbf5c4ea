using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Config;
using Engine.Core;
using Engine.Model;

namespace Engine;

/// <summary>Which task a run trains on: a built-in task, or a dataset file (see <see cref="DatasetOptions"/>).</summary>
public sealed record TaskOptions
{
    /// <summary>A built-in task (addition, sorting or countdown), or a dataset file (.jsonl or .parquet) to train on.</summary>
    public string Name { get; init; } = "addition";

    /// <summary>
    /// Seed of the task's example generator; for a dataset, of its train/eval split. The order the trainers take
    /// training examples in is keyed by sft.seed and rl.seed.
    /// </summary>
    public ulong Seed { get; init; }

    /// <summary>Task options as comma-separated key=value pairs, e.g. "min_digits=1,max_digits=3" (built-in tasks).</summary>
    public string Parameters { get; init; } = "";

    /// <summary>Dataset: a separate evaluation file; empty: hold out <see cref="EvalFraction"/> of the training file.</summary>
    public string EvalData { get; init; } = "";

    /// <summary>Dataset: the share of the training file held out for evaluation when there is no <see cref="EvalData"/>.</summary>
    public double EvalFraction { get; init; } = 0.1;

    /// <summary>Dataset: the field holding the prompt text.</summary>
    public string PromptField { get; init; } = "prompt";

    /// <summary>Dataset: the field holding the reference answer.</summary>
    public string AnswerField { get; init; } = "answer";

    /// <summary>Dataset: the field holding a chat (a list of role/content objects), used when a row has no prompt field.</summary>
    public string MessagesField { get; init; } = "messages";

    /// <summary>Dataset: what to do with a row that cannot be used: fail (stop, naming file and line) or skip (count it); the same names in config files and flags.</summary>
    public MalformedRowPolicy OnMalformed { get; init; } = MalformedRowPolicy.Fail;

    /// <summary>Dataset: the reward spec (see <see cref="Rewards"/>), e.g. "math" or "math:1,length:400:0.5"; empty: exact.</summary>
    public string Reward { get; init; } = "";

    /// <summary>True when <see cref="Name"/> names a dataset file rather than a built-in task.</summary>
    internal bool IsDataset => DatasetTask.IsDatasetPath(Name);

    /// <summary>Creates the task.</summary>
    public ITask Create()
    {
        if (IsDataset)
        {
            return DatasetTask.Load(DatasetOptions(), Rewards.Parse(Reward.Length > 0 ? Reward : "exact"));
        }

        if (Reward.Length > 0 || EvalData.Length > 0)
        {
            throw new EngineException($"task: a reward or an eval file applies to a dataset (.jsonl or .parquet), not the built-in task '{Name}'");
        }

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

    private DatasetOptions DatasetOptions() => new()
    {
        TrainPath = Name,
        EvalPath = EvalData,
        EvalFraction = EvalFraction,
        PromptField = PromptField,
        AnswerField = AnswerField,
        MessagesField = MessagesField,
        Seed = Seed,
        OnMalformed = Enum.IsDefined(OnMalformed) ? OnMalformed
            : throw new EngineException($"task: on_malformed must be fail or skip, got {(int)OnMalformed}"),
    };
}

/// <summary>The policy a run starts from: a new model of this shape, or a checkpoint.</summary>
public sealed record ModelOptions
{
    /// <summary>A Hugging Face checkpoint directory to start from; empty: a new model of the shape below.</summary>
    public string InitFrom { get; init; } = "";

    /// <summary>gpt2, llama, qwen2 or qwen3 (a new model; a checkpoint brings its own).</summary>
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

    /// <summary>
    /// A tokenizer for a new model: a tokenizer.json file, or a directory holding one (with its tokenizer_config.json
    /// and chat template); empty: a character tokenizer over the task's alphabet. Copied into every checkpoint.
    /// </summary>
    public string Tokenizer { get; init; } = "";

    /// <summary>
    /// How prompts become text: "auto" (the checkpoint's template from tokenizer_config.json; plain when it has
    /// none), chatml, llama3, plain, none (the prompt as it is), or a template file. Empty: auto for a checkpoint
    /// or a <see cref="Tokenizer"/> directory, none otherwise (a character tokenizer has no special tokens).
    /// </summary>
    public string ChatTemplate { get; init; } = "";

    /// <summary>The settings that shape and initialise a new model; a checkpoint (init_from) brings its own.</summary>
    internal static readonly string[] NewModelSettings = ["family", "layers", "dim", "heads", "kv_heads", "ffn", "max_positions", "init_seed", "init_std"];

    /// <summary>
    /// Refuses new-model settings given (as flags) together with a checkpoint to start from, where they would silently
    /// not apply. (A config file, such as a run's config.json, lists every setting, so it is not checked.)
    /// </summary>
    internal static void RefuseShapeWithCheckpoint(ModelOptions model, JsonObject given, string source)
    {
        if (model.InitFrom.Length > 0 && NewModelSettings.FirstOrDefault(given.ContainsKey) is string key)
        {
            throw new EngineException($"{source}: model.{key} shapes a new model, but the run starts from the checkpoint {model.InitFrom}, "
                                      + "which brings its own shape; drop the setting or init_from");
        }
    }

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
            "llama" or "qwen2" or "qwen3" => ModelConfig.LlamaFamily(
                Family switch { "llama" => ModelFamily.Llama, "qwen2" => ModelFamily.Qwen2, _ => ModelFamily.Qwen3 }, vocab, Dim, Layers, Heads, kv,
                Ffn > 0 ? Ffn : Math.Max(64, (8 * Dim / 3 + 63) / 64 * 64), MaxPositions, tied: true),
            _ => throw new EngineException($"model: unknown family '{Family}' (expected gpt2, llama, qwen2 or qwen3)"),
        };
        config.Validate();
        return config;
    }
}

/// <summary>How a run writes its checkpoints.</summary>
public sealed record CheckpointOptions
{
    /// <summary>
    /// The type of the weights in each checkpoint's model/ folder: f32, bf16 or f16 (with bf16 / f16 the exact
    /// F32 parameters are kept beside it, so a resumed run stays bit-identical).
    /// </summary>
    public string SaveDtype { get; init; } = "f32";

    /// <summary>Keep only the newest this many checkpoints of the run (0: keep all).</summary>
    public int KeepLast { get; init; }

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        _ = ModelFiles.ParseSaveType(SaveDtype);
        OptionChecks.AtLeast(KeepLast, 0, "keep_last");
    }
}

/// <summary>
/// Everything a training run needs: task, starting model, the SFT and RL phases (either may be
/// skipped with 0 steps) and the device. Read from a JSON config file with sections "task",
/// "model", "checkpoint", "sft", "rl", "kd" (KDRL's distillation term, <see cref="RlOptions.Distillation"/>), "guide"
/// (mixed-policy DAPO's guide, <see cref="RlOptions.Guidance"/>) and the key "device", and overridden from the command line.
/// </summary>
public sealed record RunOptions
{
    /// <summary>Task settings.</summary>
    public TaskOptions Task { get; init; } = new();

    /// <summary>Model settings.</summary>
    public ModelOptions Model { get; init; } = new();

    /// <summary>Checkpoint settings.</summary>
    public CheckpointOptions Checkpoint { get; init; } = new();

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
            ["checkpoint"] = OptionsBinder.ToJson(Checkpoint),
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

    /// <summary>The options as config-file JSON text (for comparisons).</summary>
    internal string ToJsonString() => ToJson().ToJsonString();

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
                "checkpoint" => r with { Checkpoint = OptionsBinder.Apply(r.Checkpoint, Section(section, key, source), $"{source} [checkpoint]") },
                "sft" => r with { Sft = value is null ? null : OptionsBinder.Apply(r.Sft ?? new SftOptions(), Section(section, key, source), $"{source} [sft]") },
                "rl" => r with { Rl = value is null ? null : OptionsBinder.Apply(WithAlgorithm(r.Rl ?? RlOptions.Dapo(), Section(section, key, source), source), section!, $"{source} [rl]") },
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
                _ => throw new EngineException($"{source}: unknown section '{key}' (expected task, model, checkpoint, sft, rl, kd, guide, mix, device)"),
            };
        }

        return r;
    }

    /// <summary>Validates every section.</summary>
    public void Validate()
    {
        _ = Task.Create();
        ValidateSettings();
    }

    /// <summary>Validates every section but the task (a run over a task given through the API).</summary>
    internal void ValidateSettings()
    {
        Checkpoint.Validate();
        Mix?.Validate();
        Sft?.Validate();
        Rl?.Validate();
        if (Rl is not null && Model.InitFrom.Length == 0 && Model.MaxPositions < 2)
        {
            throw new EngineException("model: max_positions must be at least 2");
        }
    }

    /// <summary>An "algorithm" in an rl section selects that preset's techniques (the budget stays); an unknown one is refused.</summary>
    private static RlOptions WithAlgorithm(RlOptions rl, JsonObject section, string source)
    {
        if (!section.TryGetPropertyValue("algorithm", out JsonNode? node))
        {
            return rl;
        }

        string algorithm = node is JsonValue v && v.TryGetValue(out string? a) ? a : throw new EngineException($"{source} [rl]: setting 'algorithm' must be a string");
        try
        {
            return algorithm == rl.Algorithm ? rl : rl.WithPresetOf(algorithm);
        }
        catch (EngineException e)
        {
            throw new EngineException($"{source} [rl]: {e.Message}");
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
