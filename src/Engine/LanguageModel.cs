using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine;

/// <summary>Settings of the generation engine that are not about sampling itself.</summary>
public sealed record GenerationSettings
{
    /// <summary>Responses decoded at the same time (continuous batching slots).</summary>
    public int MaxConcurrentSequences { get; init; } = 32;

    /// <summary>Bytes of KV cache. The cache is allocated at this size and never exceeds it.</summary>
    public long KvCacheBytes { get; init; } = 512L << 20;

    /// <summary>Positions per KV-cache block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>
    /// How the samples share the slots: full (all G of a prompt together), micro (units the KV budget holds, one after
    /// another), continuous (a finished sample's slot refilled at once) or infinite (continuous with length-aware
    /// scheduling). Every sampler gives the same responses.
    /// </summary>
    public SamplerKind Sampler { get; init; } = SamplerKind.Continuous;

    internal SamplerKind SamplerMode => Enum.IsDefined(Sampler) ? Sampler
        : throw new EngineException($"sampler must be full, micro, continuous or infinite, got {(int)Sampler}");
}

/// <summary>
/// A causal language model on a compute device, with its tokenizer: load a Hugging Face
/// checkpoint, sample groups of responses, save it back.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private readonly Accelerator acc;
    private readonly System.Text.Json.Nodes.JsonObject? configJson;
    private readonly string prefix;
    private Generator? generator;
    private GenerationSettings? generatorSettings;

    internal LanguageModel(Accelerator acc, Transformer model, ITokenizer? tokenizer, System.Text.Json.Nodes.JsonObject? configJson, string prefix)
    {
        this.acc = acc;
        Model = model;
        Tokenizer = tokenizer;
        this.configJson = configJson;
        this.prefix = prefix;
    }

    /// <summary>The device the model runs on.</summary>
    public DeviceInfo Device => acc.Info;

    /// <summary>Number of parameters.</summary>
    public long ParameterCount => Model.Layout.ParameterCount;

    /// <summary>Vocabulary size of the model.</summary>
    public int VocabSize => Model.Config.VocabSize;

    /// <summary>Longest sequence (prompt plus response) the model accepts.</summary>
    public int MaxPositions => Model.Config.MaxPositions;

    /// <summary>Settings used by <see cref="Generate(IReadOnlyList{string}, int, SamplingOptions)"/>.</summary>
    public GenerationSettings GenerationSettings { get; set; } = new();

    internal Transformer Model { get; }

    internal ITokenizer? Tokenizer { get; }

    /// <summary>The checkpoint directory the model was loaded from (its tokenizer files go with every save), or null.</summary>
    internal string? SourceDirectory { get; init; }

    /// <summary>
    /// Loads a Hugging Face checkpoint directory (config.json and model.safetensors, or the sharded
    /// form) onto a device. The tokenizer is read from <paramref name="tokenizerPath"/>, else from
    /// the directory's tokenizer.json when present.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="device">Device spec (see <see cref="Devices.Resolve"/>); null: ENGINE_DEVICE, then the CPU.</param>
    /// <param name="tokenizerPath">A tokenizer file, or null to look in the directory.</param>
    public static LanguageModel Load(string directory, string? device = null, string? tokenizerPath = null)
    {
        Accelerator acc = Backends.Registry.Open(device);
        try
        {
            LoadedModel loaded = HfCheckpoint.Load(acc, directory);
            ITokenizer? tokenizer = tokenizerPath is not null ? TokenizerLoader.Load(tokenizerPath)
                : File.Exists(Path.Combine(directory, TokenizerLoader.FileName)) ? TokenizerLoader.Load(directory) : null;
            if (tokenizer is not null && tokenizer.VocabSize > loaded.Model.Config.VocabSize)
            {
                throw new EngineException($"the tokenizer has {tokenizer.VocabSize} ids but the model only {loaded.Model.Config.VocabSize}");
            }

            var model = new LanguageModel(acc, loaded.Model, tokenizer, loaded.ConfigJson, loaded.Prefix) { SourceDirectory = directory };
            Log.ModelLoaded(EngineTelemetry.Logger, directory, acc.Info.Name, model.ParameterCount);
            return model;
        }
        catch
        {
            acc.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A new, randomly initialised model for a task, with a character tokenizer over the task's
    /// alphabet (plus &lt;pad&gt;, &lt;bos&gt;, &lt;eos&gt;).
    /// </summary>
    /// <param name="task">The task whose alphabet the tokenizer covers.</param>
    /// <param name="options">Model shape and initialisation (its <c>InitFrom</c> must be empty).</param>
    /// <param name="device">Device spec (see <see cref="Devices.Resolve"/>); null: ENGINE_DEVICE, then the CPU.</param>
    public static LanguageModel CreateForTask(ITask task, ModelOptions options, string? device = null)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(options);
        if (options.InitFrom.Length > 0)
        {
            return Load(options.InitFrom, device);
        }

        Accelerator acc = Backends.Registry.Open(device);
        try
        {
            var tokenizer = new CharTokenizer(task.Alphabet);
            var model = new Transformer(acc, options.Build(tokenizer.VocabSize) with { EosTokenIds = [tokenizer.EosTokenId!.Value] });
            ModelInit.Initialize(model, options.InitSeed, options.InitStd);
            return new LanguageModel(acc, model, tokenizer, null, "");
        }
        catch
        {
            acc.Dispose();
            throw;
        }
    }

    /// <summary>Starts supervised fine-tuning of this model on a task (prompt tokens masked out of the loss).</summary>
    public SftSession StartSft(ITask task, SftOptions options) => new(new SftTrainer(Model, Codec(), task, options, GetGenerator()));

    /// <summary>Starts reinforcement learning of this model on a task (GRPO/DAPO per <paramref name="options"/>).</summary>
    public RlSession StartRl(ITask task, RlOptions options) => StartRl(task, options, teacher: null);

    /// <summary>
    /// Starts an RL session with frozen auxiliary models: a <paramref name="teacher"/> for KDRL's distillation term
    /// (<see cref="RlOptions.Distillation"/>) and a <paramref name="guide"/> for mixed-policy DAPO
    /// (<see cref="RlOptions.Guidance"/>). Each must share this model's tokenizer and is copied, frozen, onto this model's
    /// device; one the options do not ask for is ignored.
    /// </summary>
    public RlSession StartRl(ITask task, RlOptions options, LanguageModel? teacher, LanguageModel? guide = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Rl.FrozenModel? frozenTeacher = null, frozenGuide = null;
        try
        {
            if (teacher is not null && options.Distillation is not null)
            {
                frozenTeacher = Rl.FrozenModel.From(teacher, "teacher", Model, Tokenizer);
            }

            if (guide is not null && options.Guidance is not null)
            {
                frozenGuide = Rl.FrozenModel.From(guide, "guide", Model, Tokenizer);
            }

            return new(new Rl.RlTrainer(Model, Codec(), task, options, teacher: frozenTeacher, ownsTeacher: true, guide: frozenGuide, ownsGuide: true));
        }
        catch
        {
            frozenTeacher?.Dispose();
            frozenGuide?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Accuracy on the first <paramref name="examples"/> test examples of a task: greedy, and avg@k over
    /// <paramref name="samples"/> responses per prompt at <paramref name="temperature"/> (0 samples: greedy only).
    /// </summary>
    public Evaluation Evaluate(ITask task, int examples = 200, int samples = 0, float temperature = 1f, ulong seed = 0) =>
        Evaluator.Run(GetGenerator(), Codec(), task, task.MaxResponseLength + 1, examples, samples, temperature, seed);

    /// <summary>Encodes text with the model's tokenizer.</summary>
    public int[] Encode(string text) => RequireTokenizer().Encode(text);

    /// <summary>Decodes token ids with the model's tokenizer.</summary>
    public string Decode(IReadOnlyList<int> ids) => RequireTokenizer().Decode(ids.ToArray());

    /// <summary>Samples <paramref name="samplesPerPrompt"/> responses to each text prompt (texts decoded).</summary>
    public IReadOnlyList<GenerationGroup> Generate(IReadOnlyList<string> prompts, int samplesPerPrompt, SamplingOptions options)
    {
        ITokenizer tokenizer = RequireTokenizer();
        var groups = Generate(prompts.Select(tokenizer.Encode).ToArray(), samplesPerPrompt, options);
        foreach (GenerationGroup group in groups)
        {
            foreach (GeneratedSequence s in group.Samples)
            {
                s.Text = tokenizer.Decode(s.TokenIds.ToArray());
            }
        }

        return groups;
    }

    /// <summary>Samples <paramref name="samplesPerPrompt"/> responses to each prompt given as token ids.</summary>
    public IReadOnlyList<GenerationGroup> Generate(IReadOnlyList<int[]> promptTokenIds, int samplesPerPrompt, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.EosTokenIds is null && Model.Config.EosTokenIds.Count == 0 && Tokenizer?.EosTokenId is int eos)
        {
            options = options with { EosTokenIds = [eos] };
        }

        return GetGenerator().Generate(promptTokenIds, samplesPerPrompt, options);
    }

    /// <summary>
    /// This model as a Microsoft.Extensions.AI <see cref="Microsoft.Extensions.AI.IChatClient"/> (chat
    /// completion, streaming token by token included), so it plugs into code written against that abstraction.
    /// The conversation is rendered by the chat template (system, user and assistant roles) and the response
    /// ends at any end-of-sequence or end-of-turn id; ChatOptions' temperature, top-p, top-k, seed, max
    /// output tokens and stop sequences apply. The client shares this model (dispose the model, not only the client).
    /// </summary>
    /// <param name="modelId">The id the responses and the client's metadata report.</param>
    /// <param name="chatTemplate">
    /// "auto" (the template of the directory the model was loaded from; without one, the family the tokenizer's
    /// special tokens announce, ChatML or Llama-3; else plain), "chatml", "llama3", "plain", or a template file.
    /// </param>
    public Microsoft.Extensions.AI.IChatClient AsChatClient(string modelId = "engine", string chatTemplate = "auto")
    {
        ArgumentNullException.ThrowIfNull(chatTemplate);
        ITokenizer tokenizer = Tokenizer ?? throw new EngineException("this model has no tokenizer, so it cannot chat");
        ChatTemplate template = chatTemplate.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)
            ? ChatTemplate.ForModel(SourceDirectory, tokenizer)
            : ChatTemplate.Load(chatTemplate, SourceDirectory) ?? ChatTemplate.Plain();
        return new Chat.LanguageModelChatClient(this, modelId, template);
    }

    /// <summary>Saves the model as a Hugging Face checkpoint directory (written atomically, file by file).</summary>
    public void Save(string directory) => Save(directory, "f32");

    /// <summary>
    /// Saves the model as a Hugging Face checkpoint directory with its weights stored as
    /// <paramref name="dtype"/> ("f32", "bf16" or "f16"); the loaded config.json's keys are kept, and
    /// the tokenizer files and chat template of the directory the model was loaded from are copied.
    /// </summary>
    public void Save(string directory, string dtype)
    {
        HfCheckpoint.Save(Model, directory, configJson, prefix, dtype: ModelFiles.ParseSaveType(dtype));
        if (SourceDirectory is string sourceDirectory && File.Exists(Path.Combine(sourceDirectory, TokenizerLoader.FileName))
            && !Path.GetFullPath(sourceDirectory).Equals(Path.GetFullPath(directory), StringComparison.Ordinal))
        {
            ModelFiles.CopyTokenizerFiles(sourceDirectory, directory);
        }
        else if (Tokenizer is CharTokenizer chars)
        {
            chars.Save(Path.Combine(directory, TokenizerLoader.FileName));
        }

        Log.ModelSaved(EngineTelemetry.Logger, directory, dtype);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        generator?.Dispose();
        Model.Dispose();
        acc.Dispose();
    }

    internal Generator GetGenerator()
    {
        if (generator is null || !ReferenceEquals(generatorSettings, GenerationSettings))
        {
            generator?.Dispose();
            GenerationSettings s = GenerationSettings;
            generator = new Generator(Model, new GeneratorOptions
            {
                MaxSlots = s.MaxConcurrentSequences, KvBudgetBytes = s.KvCacheBytes, BlockSize = s.BlockSize,
                Sampler = s.SamplerMode,
            });
            generatorSettings = s;
        }

        return generator;
    }

    /// <summary>
    /// The codec of sessions and evaluations: prompts through the chat template of the checkpoint the model was loaded
    /// from (its tokenizer_config.json / chat_template.jinja; plain text when it has none, an error when the engine does not
    /// know it), as `engine sft` / `engine rl` do; a model made here prompts with the text as it is.
    /// </summary>
    private TaskCodec Codec() => TaskCodec.For(RequireTokenizer(), Model.Config.EosTokenIds,
        SourceDirectory is not null && Tokenizer is not CharTokenizer ? ChatTemplate.FromModelDirectory(SourceDirectory) : null);

    private ITokenizer RequireTokenizer() =>
        Tokenizer ?? throw new EngineException("this model has no tokenizer: pass one when loading or give token ids");
}

/// <summary>Supervised fine-tuning in progress on a <see cref="LanguageModel"/>; one <see cref="Step"/> per optimizer step.</summary>
public sealed class SftSession : IDisposable
{
    private readonly SftTrainer trainer;

    internal SftSession(SftTrainer trainer) => this.trainer = trainer;

    /// <summary>Steps taken.</summary>
    public int StepsDone => trainer.StepsDone;

    /// <summary>Trains on the next batch and returns what the step did.</summary>
    public SftStepMetrics Step() => trainer.Step();

    /// <summary>Greedy test accuracy of the current weights.</summary>
    public Evaluation Evaluate(int? examples = null) => trainer.Evaluate(examples);

    /// <inheritdoc />
    public void Dispose() => trainer.Dispose();
}

/// <summary>Reinforcement learning in progress on a <see cref="LanguageModel"/>; one <see cref="Step"/> per RL step.</summary>
public sealed class RlSession : IDisposable
{
    private readonly Rl.RlTrainer trainer;

    internal RlSession(Rl.RlTrainer trainer) => this.trainer = trainer;

    /// <summary>RL steps taken.</summary>
    public int StepsDone => trainer.StepsDone;

    /// <summary>Samples, scores, filters, computes advantages and updates the policy; returns the step's metrics.</summary>
    public RlStepMetrics Step() => trainer.Step();

    /// <summary>Test accuracy of the current policy (greedy, and avg@k at the rollout temperature).</summary>
    public Evaluation Evaluate(int? examples = null) => trainer.Evaluate(examples);

    /// <inheritdoc />
    public void Dispose() => trainer.Dispose();
}
