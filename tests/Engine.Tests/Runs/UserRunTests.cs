using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Model;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Engine.Tests.Tokenizers;
using Parquet.Schema;
using Parquet.Serialization;

namespace Engine.Tests.Runs;

/// <summary>
/// The real user's path (issue 17): your Hugging Face model, your JSONL / Parquet data, your reward,
/// through `engine sft` / `engine rl` and through <see cref="TrainingRun"/> over your own task.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class UserRunTests
{
    /// <summary>Qwen2.5's ChatML template text, as a Hugging Face tokenizer_config.json ships it (default system message included).</summary>
    private const string QwenTemplate =
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
        + "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
        + "{%- for message in messages %}{%- if message.role != 'system' %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        + "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    /// <summary>
    /// A tiny Qwen3 in the Hugging Face layout: config.json (with a key the engine does not use), weights, the
    /// Qwen2-style BPE tokenizer fixture and a tokenizer_config.json with a ChatML template.
    /// </summary>
    internal static string WriteTinyChatModel(string directory)
    {
        var tokenizer = Engine.Tokenizers.BpeTokenizer.FromFile(TokenizerFixtures.Path("qwen2_style_tokenizer.json"));
        Assert.True(tokenizer.TryGetSpecialTokenId("<|im_end|>", out int imEnd));
        using var acc = TestDevices.Cpu();
        var config = ModelConfig.LlamaFamily(ModelFamily.Qwen3, tokenizer.VocabSize, 32, 1, 2, 1, 64, 96, tied: true) with { EosTokenIds = [imEnd] };
        using (var model = new Transformer(acc, config))
        {
            ModelInit.Initialize(model, 5, 0.05f);
            HfCheckpoint.Save(model, directory);
        }

        string configPath = Path.Combine(directory, "config.json");
        JsonObject json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json["rope_scaling"] = null;
        json["my_own_key"] = "kept";
        File.WriteAllText(configPath, json.ToJsonString());
        File.Copy(TokenizerFixtures.Path("qwen2_style_tokenizer.json"), Path.Combine(directory, "tokenizer.json"));
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"),
            new JsonObject { ["chat_template"] = QwenTemplate, ["eos_token"] = "<|im_end|>" }.ToJsonString());
        return directory;
    }

    /// <summary>Arithmetic rows: "a+b=" with the sum as the answer.</summary>
    private static string WriteProblems(string path, int rows)
    {
        File.WriteAllLines(path, Enumerable.Range(0, rows).Select(i => $"{{\"prompt\": \"What is {i % 7} plus {i % 5}?\", \"answer\": \"{i % 7 + i % 5}\"}}"));
        return path;
    }

    private static string[] RlFlags(string steps = "2") =>
    [
        "--set", $"rl.steps={steps}", "rl.prompts_per_step=2", "rl.samples_per_prompt=4", "rl.max_new_tokens=4", "rl.overlong_buffer=1",
        "rl.eval_examples=3", "rl.eval_samples=2", "rl.eval_every=0", "rl.learning_rate=0.001", "rl.warmup_steps=0", "rl.checkpoint_every=1",
        "rl.kv_cache_mb=8", "rl.max_concurrent_sequences=16",
    ];

    [Fact]
    public void Sft_then_rl_from_your_model_on_your_jsonl_writes_the_run_folder_and_checkpoints_others_load()
    {
        using var temp = new TempDir();
        string model = WriteTinyChatModel(Directory.CreateDirectory(temp.File("model")).FullName);
        string data = WriteProblems(temp.File("problems.jsonl"), 30);
        string sftRun = temp.File("sft"), rlRun = temp.File("rl");

        var (code, _, err) = CliRunner.Run(["sft", "--model", model, "--data", data, "--eval-fraction", "0.2", "--save-dtype", "bf16", "--out", sftRun,
            "--set", "sft.steps=2", "sft.batch_size=4", "sft.eval_examples=3"]);
        Assert.True(code == 0, err);
        foreach (string file in new[] { "config.json", "metrics.jsonl", "report.html", "summary.json" })
        {
            Assert.True(File.Exists(Path.Combine(sftRun, file)), file);
        }

        string sftModel = Path.Combine(sftRun, "checkpoints", "sft-000002", "model");
        JsonObject saved = JsonNode.Parse(File.ReadAllText(Path.Combine(sftModel, "config.json")))!.AsObject();
        Assert.Equal("kept", (string?)saved["my_own_key"]);
        Assert.True(saved.ContainsKey("rope_scaling"));
        Assert.Equal("bfloat16", (string?)saved["torch_dtype"]);
        Assert.True(File.Exists(Path.Combine(sftModel, "tokenizer.json")));
        Assert.Equal(File.ReadAllText(Path.Combine(model, "tokenizer_config.json")), File.ReadAllText(Path.Combine(sftModel, "tokenizer_config.json")));
        JsonObject sftSummary = JsonNode.Parse(File.ReadAllText(Path.Combine(sftRun, "summary.json")))!.AsObject();
        Assert.Equal("chatml", (string?)sftSummary["chat_template"]);
        Assert.Equal(24, (int)sftSummary["dataset"]!["train_examples"]!);

        (code, _, err) = CliRunner.Run(["rl", "--algo", "grpo", "--model", sftModel, "--data", data, "--reward", "math", "--reward", "contains:0.1",
            "--keep-last", "1", "--out", rlRun, .. RlFlags()]);
        Assert.True(code == 0, err);
        Assert.Equal(["rl-000002"], Directory.GetDirectories(Path.Combine(rlRun, "checkpoints")).Select(d => Path.GetFileName(d)).ToArray());
        JsonObject summary = JsonNode.Parse(File.ReadAllText(Path.Combine(rlRun, "summary.json")))!.AsObject();
        Assert.Equal("math,contains:0.1", (string?)summary["dataset"]!["reward"]);
        Assert.NotNull(summary["pass_at_k_after_rl"]);
        Assert.True(File.Exists(Path.Combine(rlRun, "report.html")));

        // The final checkpoint reloads and samples with its chat template.
        string rlModel = Path.Combine(rlRun, "checkpoints", "rl-000002", "model");
        string stdout;
        (code, stdout, err) = CliRunner.Run(["generate", "--model", rlModel, "--prompt", "What is 2 plus 3?", "--chat-template", "auto",
            "--temperature", "0", "--max-new-tokens", "4"]);
        Assert.True(code == 0, err);
        Assert.StartsWith("[0] (", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sft_on_your_parquet_file_with_its_own_field_names_runs_and_keys_its_shuffle_by_sft_seed()
    {
        using var temp = new TempDir();
        string model = WriteTinyChatModel(Directory.CreateDirectory(temp.File("model")).FullName);
        string parquet = temp.File("problems.parquet");
        await using (FileStream s = File.Create(parquet))
        {
            var schema = new ParquetSchema(new DataField<string>("question"), new DataField<long>("solution"));
            await ParquetSerializer.SerializeUntypedAsync(
                [.. Enumerable.Range(0, 12).Select(i => (IDictionary<string, object?>)new Dictionary<string, object?> { ["question"] = $"What is {i} plus 1?", ["solution"] = (long)i + 1 })],
                schema, s);
        }

        string[] Run(string dir, string seed)
        {
            var (code, _, err) = CliRunner.Run(["sft", "--model", model, "--data", parquet, "--prompt-field", "question", "--answer-field", "solution",
                "--eval-fraction", "0.25", "--out", dir, "--set", "sft.steps=3", "sft.batch_size=2", "sft.eval_examples=2", $"sft.seed={seed}"]);
            Assert.True(code == 0, err);
            JsonObject summary = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "summary.json")))!.AsObject();
            Assert.Equal(9, (int)summary["dataset"]!["train_examples"]!);
            Assert.Equal(3, (int)summary["dataset"]!["eval_examples"]!);
            Assert.True(File.Exists(Path.Combine(dir, "checkpoints", "sft-000003", "model", "model.safetensors")));
            return [.. File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l => (string?)JsonNode.Parse(l)!["loss"]?.ToJsonString() ?? "")];
        }

        string[] a = Run(temp.File("a"), "1");
        Assert.Equal(a, Run(temp.File("b"), "1"));
        Assert.NotEqual(a, Run(temp.File("c"), "2")); // another order: other batches, other losses
    }

    [Fact]
    public void Rl_on_your_data_resumed_through_the_cli_continues_bit_identically()
    {
        using var temp = new TempDir();
        string model = WriteTinyChatModel(Directory.CreateDirectory(temp.File("model")).FullName);
        string data = WriteProblems(temp.File("problems.jsonl"), 20);
        string straight = temp.File("straight"), resumed = temp.File("resumed");
        string[] args = ["rl", "--model", model, "--data", data, "--reward", "numeric", .. RlFlags("3")];
        Assert.Equal(0, CliRunner.Run([.. args, "--out", straight]).ExitCode);
        Assert.Equal(0, CliRunner.Run([.. args, "--out", resumed]).ExitCode);

        // As if killed after step 2: its last checkpoint and metrics line lost.
        Directory.Delete(Path.Combine(resumed, "checkpoints", "rl-000003"), recursive: true);
        string[] lines = File.ReadAllLines(Path.Combine(resumed, "metrics.jsonl"));
        File.WriteAllLines(Path.Combine(resumed, "metrics.jsonl"), lines.Take(lines.Length - 1));
        var refused = CliRunner.Run(["rl", "--resume", "--out", resumed, "--reward", "exact"]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("--resume continues the run with its saved config.json", refused.Stderr, StringComparison.Ordinal);
        var (code, _, err) = CliRunner.Run(["rl", "--resume", "--out", resumed]);
        Assert.True(code == 0, err);

        string Weights(string run) => Path.Combine(run, "checkpoints", "rl-000003", "model", "model.safetensors");
        Assert.Equal(File.ReadAllBytes(Weights(straight)), File.ReadAllBytes(Weights(resumed)));
    }

    public static TheoryData<string, string[], string> BadInputs => new()
    {
        { "{\"prompt\": \"1+1\", \"answer\": \"2\"}\n{\"question\": \"2+2\", \"answer\": \"4\"}\n", [], "bad.jsonl:2" },
        { "{\"prompt\": [\"1+1\"], \"answer\": \"2\"}\n", [], "bad.jsonl:1" },
        { "", [], "bad.jsonl" },
        { "{\"prompt\": \"1+1\", \"answer\": \"2\"}\n", ["--reward", "fuzzy"], "unknown reward 'fuzzy'" },
        { "{\"prompt\": \"1+1\", \"answer\": \"2\"}\n", ["--chat-template", "vicuna"], "chat template \"vicuna\"" },
        { "{\"prompt\": \"1+1\", \"answer\": \"2\"}\n", ["--save-dtype", "f8"], "save dtype \"f8\"" },
        { "{\"prompt\": \"1+1\", \"answer\": \"2\"}\n", ["--on-malformed", "ignore"], "--on-malformed must be fail or skip, got 'ignore'" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Bad_input_is_one_line_a_non_zero_exit_and_no_run_folder(string rows, string[] flags, string expected)
    {
        using var temp = new TempDir();
        string data = temp.File("bad.jsonl");
        File.WriteAllText(data, rows);
        string run = temp.File("run");
        var (code, _, err) = CliRunner.Run(["rl", "--data", data, "--out", run, .. flags]);
        Assert.Equal(1, code);
        Assert.Contains(expected, err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
        Assert.False(Directory.Exists(run), "nothing may be written for bad input");
    }

    [Fact]
    public async Task A_parquet_file_with_another_schema_a_model_without_tokenizer_and_an_unknown_template_are_refused()
    {
        using var temp = new TempDir();
        string parquet = temp.File("other.parquet");
        await using (FileStream s = File.Create(parquet))
        {
            var schema = new ParquetSchema(new DataField<string>("question"), new DataField<double>("score"));
            await ParquetSerializer.SerializeUntypedAsync([new Dictionary<string, object?> { ["question"] = "q", ["score"] = 0.5 }], schema, s);
        }

        var (code, _, err) = CliRunner.Run(["sft", "--data", parquet, "--out", temp.File("a")]);
        Assert.Equal(1, code);
        Assert.Contains("other.parquet", err, StringComparison.Ordinal);
        Assert.Contains("question", err, StringComparison.Ordinal);

        string model = WriteTinyChatModel(Directory.CreateDirectory(temp.File("model")).FullName);
        string data = WriteProblems(temp.File("problems.jsonl"), 10);
        string noTokenizer = Directory.CreateDirectory(temp.File("no-tokenizer")).FullName;
        foreach (string f in new[] { "config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(model, f), Path.Combine(noTokenizer, f));
        }

        (code, _, err) = CliRunner.Run(["sft", "--model", noTokenizer, "--data", data, "--out", temp.File("b")]);
        Assert.Equal(1, code);
        Assert.Contains("tokenizer.json", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("b")));

        (code, _, err) = CliRunner.Run(["sft", "--model", model, "--data", data, "--model-layers", "4", "--out", temp.File("d")]);
        Assert.Equal(1, code);
        Assert.Contains("model.layers shapes a new model", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("d")));

        (code, _, err) = CliRunner.Run(["sft", "--model", model, "--data", data, "--set", "model.dim=64", "--out", temp.File("e")]);
        Assert.Equal(1, code);
        Assert.Contains("--set: model.dim shapes a new model", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("e")));

        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{"chat_template": "{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}"}""");
        (code, _, err) = CliRunner.Run(["sft", "--model", model, "--data", data, "--out", temp.File("c")]);
        Assert.Equal(1, code);
        Assert.Contains("does not know this chat template", err, StringComparison.Ordinal);
        Assert.Contains("chatml, llama3, plain", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("c")));
    }

    [Fact]
    public void Sessions_through_the_api_prompt_with_the_checkpoints_chat_template()
    {
        using var temp = new TempDir();
        string model = WriteTinyChatModel(Directory.CreateDirectory(temp.File("model")).FullName);
        string data = WriteProblems(temp.File("problems.jsonl"), 10);
        DatasetTask task = DatasetTask.Load(new DatasetOptions { TrainPath = data, EvalFraction = 0.2 });
        using (LanguageModel lm = LanguageModel.Load(model))
        using (SftSession sft = lm.StartSft(task, new SftOptions { Steps = 1, BatchSize = 2, EvalExamples = 2 }))
        {
            Assert.True(sft.Step().Loss > 0);
        }

        // A template the engine does not know is an error, never silent plain text.
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{"chat_template": "{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}"}""");
        using LanguageModel unknown = LanguageModel.Load(model);
        var e = Assert.Throws<EngineException>(() => unknown.StartSft(task, new SftOptions { Steps = 1, BatchSize = 2 }));
        Assert.Contains("does not know this chat template", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A task of your own: answer with the digit 7.</summary>
    private sealed class SevenTask(string name = "seven") : ITask
    {
        public string Name => name;

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 1;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}{(index / 10) % 10}=", "7");

        public RewardResult Score(TaskExample example, string response) =>
            response.StartsWith('7') ? new RewardResult(1, response == "7") : new RewardResult(0, false);
    }

    private static RunOptions Tiny(int sftSteps, int rlSteps, float klCoef = 0) => new()
    {
        Model = new ModelOptions { Layers = 1, Dim = 32, Heads = 2, MaxPositions = 16 },
        Sft = sftSteps == 0 ? null : new SftOptions { Steps = sftSteps, BatchSize = 8, EvalExamples = 4, LearningRate = 1e-2f },
        Rl = RlOptions.Grpo() with
        {
            Steps = rlSteps, PromptsPerStep = 4, SamplesPerPrompt = 4, MaxNewTokens = 3, OverlongBuffer = 1, EvalEvery = 0, EvalExamples = 4,
            EvalSamples = 2, LearningRate = 1e-2f, WarmupSteps = 0, KvCacheMb = 8, MaxConcurrentSequences = 16, KlCoef = klCoef,
        },
    };

    [Fact]
    public void A_run_over_your_own_task_through_the_api_gets_the_run_folder_and_resumes_bit_identically()
    {
        using var temp = new TempDir();
        RunOptions options = Tiny(2, 3) with { Rl = Tiny(2, 3).Rl! with { CheckpointEvery = 1 }, Checkpoint = new CheckpointOptions { KeepLast = 2 } };
        string straight = temp.File("straight"), resumed = temp.File("resumed");
        RunResult result = TrainingRun.Execute(options, new SevenTask(), straight);
        Assert.True(File.Exists(result.ReportPath) && File.Exists(result.SummaryPath));
        Assert.Equal(["rl-000002", "rl-000003"], Directory.GetDirectories(Path.Combine(straight, "checkpoints")).Select(d => Path.GetFileName(d)).Order().ToArray());
        Assert.NotNull(result.PassAtKAfterRl);

        TrainingRun.Execute(options, new SevenTask(), resumed);
        Directory.Delete(Path.Combine(resumed, "checkpoints", "rl-000003"), recursive: true);
        var e = Assert.Throws<EngineException>(() => TrainingRun.Execute(options, new SevenTask("other"), resumed, resume: true));
        Assert.Contains("started on task 'seven', not 'other'", e.Message, StringComparison.Ordinal);
        TrainingRun.Execute(options, new SevenTask(), resumed, resume: true);
        string Weights(string run) => Path.Combine(run, "checkpoints", "rl-000003", "model", "model.safetensors");
        Assert.Equal(File.ReadAllBytes(Weights(straight)), File.ReadAllBytes(Weights(resumed)));
    }

    [Fact]
    public void A_run_killed_in_rl_before_its_first_rl_checkpoint_resumes_with_the_kl_reference_of_the_sft_weights()
    {
        // The KL reference must be the policy RL starts from (the SFT weights); built from the pre-SFT weights,
        // the resumed run's KL term and so its weights differ from the uninterrupted run's.
        using var temp = new TempDir();
        RunOptions options = Tiny(3, 2, klCoef: 0.5f);
        string straight = temp.File("straight"), resumed = temp.File("resumed");
        TrainingRun.Execute(options, new SevenTask(), straight);
        TrainingRun.Execute(options, new SevenTask(), resumed);
        Directory.Delete(Path.Combine(resumed, "checkpoints", "rl-000002"), recursive: true);
        string metrics = Path.Combine(resumed, "metrics.jsonl");
        File.WriteAllLines(metrics, File.ReadAllLines(metrics).Where(l => !l.Contains("\"phase\":\"rl\"", StringComparison.Ordinal)));
        TrainingRun.Execute(options, new SevenTask(), resumed, resume: true);

        string Weights(string run) => Path.Combine(run, "checkpoints", "rl-000002", "model", "model.safetensors");
        Assert.Equal(File.ReadAllBytes(Weights(straight)), File.ReadAllBytes(Weights(resumed)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "checkpoints", "rl-000002", "reference.safetensors")),
            File.ReadAllBytes(Path.Combine(resumed, "checkpoints", "rl-000002", "reference.safetensors")));
    }

    [Fact]
    public void A_reward_that_throws_stops_the_run_naming_the_example_with_its_last_checkpoint_intact()
    {
        using var temp = new TempDir();
        string data = WriteProblems(temp.File("problems.jsonl"), 20);
        bool explode = false;
        IRewardFunction reward = Rewards.FromFunction((_, completion, fields) =>
            explode ? throw new InvalidOperationException("my reward broke") : completion.Trim() == fields["answer"] ? 1 : 0);
        DatasetTask task = DatasetTask.Load(new DatasetOptions { TrainPath = data, EvalFraction = 0.2 }, reward);
        RunOptions options = Tiny(0, 3) with { Model = Tiny(0, 3).Model with { MaxPositions = 40 }, Rl = Tiny(0, 3).Rl! with { CheckpointEvery = 1 } };
        string run = temp.File("run");
        var progress = new InlineProgress(p => explode |= p is { Phase: "rl", Step: 1 });
        var e = Assert.Throws<EngineException>(() => TrainingRun.Execute(options, task, run, progress: progress));
        Assert.Contains("the reward failed on example problems.jsonl:", e.Message, StringComparison.Ordinal);
        Assert.Contains("my reward broke", e.Message, StringComparison.Ordinal);
        Assert.Equal(["rl-000001"], Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(d => Path.GetFileName(d)).ToArray());

        // The checkpoint is whole: the run resumes from it once the reward is fixed.
        explode = false;
        RunResult resumed = TrainingRun.Execute(options, task, run, resume: true);
        Assert.True(File.Exists(resumed.SummaryPath));
        Assert.True(File.Exists(Path.Combine(run, "checkpoints", "rl-000003", "state.json")));
    }

    [Fact]
    public void Rl_algorithm_in_a_config_file_selects_its_preset_or_is_refused()
    {
        RunOptions grpo = new RunOptions().WithJson(JsonNode.Parse("""{"rl": {"algorithm": "grpo", "steps": 7}}""")!.AsObject(), "c.json");
        Assert.Equal(RlOptions.Grpo().DynamicSampling, grpo.Rl!.DynamicSampling);
        Assert.Equal(RlOptions.Grpo().EpsHigh, grpo.Rl.EpsHigh);
        Assert.NotEqual(RlOptions.Dapo().EpsHigh, grpo.Rl.EpsHigh);
        Assert.Equal(7, grpo.Rl.Steps);
        var e = Assert.Throws<EngineException>(() => new RunOptions().WithJson(JsonNode.Parse("""{"rl": {"algorithm": "ppo"}}""")!.AsObject(), "c.json"));
        Assert.Contains("c.json [rl]: algorithm must be grpo, dapo", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class InlineProgress(Action<RunProgress> action) : IProgress<RunProgress>
    {
        public void Report(RunProgress value) => action(value);
    }
}
