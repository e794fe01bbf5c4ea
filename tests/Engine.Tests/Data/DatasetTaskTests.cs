using Engine.Core;
using Engine.Tests.Cli;
using Parquet.Schema;
using Parquet.Serialization;

namespace Engine.Tests.Data;

public sealed class DatasetTaskTests : IDisposable
{
    private readonly TempDir temp = new();

    public void Dispose() => temp.Dispose();

    private string Jsonl(string name, params string[] lines)
    {
        string path = temp.File(name);
        File.WriteAllLines(path, lines);
        return path;
    }

    private static EngineException Fails(DatasetOptions options) =>
        Assert.Throws<EngineException>(() => DatasetTask.Load(options));

    [Fact]
    public void Jsonl_rows_become_examples_with_fields_and_sources()
    {
        string path = Jsonl("math.jsonl",
            """{"prompt": "1+1?", "answer": 2, "level": "easy"}""",
            "",
            """{"prompt": "2+3?", "answer": "5", "level": "hard"}""");
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, Shuffle = false });
        Assert.Equal("math", task.Name);
        Assert.Equal(2, task.TrainCount);
        TaskExample first = task.Example(DataSplit.Train, 0);
        Assert.Equal(("1+1?", "2"), (first.Prompt, first.Reference));
        Assert.Equal("easy", first.Fields["level"]);
        Assert.Equal("math.jsonl:1", first.Source);
        Assert.Equal("math.jsonl:3", task.Example(DataSplit.Train, 1).Source);
        Assert.Equal("math.jsonl:1", task.Example(DataSplit.Train, 2).Source); // the next epoch starts over
    }

    [Fact]
    public void Field_mapping_reads_other_names()
    {
        string path = Jsonl("q.jsonl", """{"question": "Why?", "solution": "Because. #### 4"}""");
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, PromptField = "question", AnswerField = "solution" });
        Assert.Equal("Why?", task.Example(DataSplit.Train, 0).Prompt);
        Assert.Equal("Because. #### 4", task.Example(DataSplit.Train, 0).Reference);
    }

    [Fact]
    public void A_chat_ending_with_the_assistant_turn_carries_its_answer()
    {
        string path = Jsonl("chat.jsonl",
            """{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]}""");
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0 });
        TaskExample e = task.Example(DataSplit.Train, 0);
        Assert.Equal("Capital of France?", e.Prompt);
        Assert.Equal("Paris", e.Reference);
        Assert.Equal([new ChatTurn("system", "Be brief."), new ChatTurn("user", "Capital of France?")], e.Messages!);
    }

    [Fact]
    public void Shuffled_order_is_keyed_by_the_seed_and_covers_each_epoch_once()
    {
        string path = Jsonl("n.jsonl", Enumerable.Range(0, 20).Select(i => $$"""{"prompt": "p{{i}}", "answer": "{{i}}"}""").ToArray());
        DatasetTask Load(ulong seed) => DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, Seed = seed });
        string[] Epoch(DatasetTask t, int epoch) => Enumerable.Range(epoch * 20, 20).Select(i => t.Example(DataSplit.Train, i).Reference).ToArray();
        var a = Load(7);
        Assert.Equal(Epoch(a, 0), Epoch(Load(7), 0));
        Assert.NotEqual(Epoch(a, 0), Epoch(Load(8), 0));
        Assert.NotEqual(Epoch(a, 0), Epoch(a, 1));
        Assert.Equal(Enumerable.Range(0, 20).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Order(), Epoch(a, 1).Order());
        Assert.NotEqual(Enumerable.Range(0, 20).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), Epoch(a, 0));
    }

    [Fact]
    public void Split_fraction_holds_out_disjoint_rows_and_an_eval_file_replaces_it()
    {
        string path = Jsonl("n.jsonl", Enumerable.Range(0, 20).Select(i => $$"""{"prompt": "p{{i}}", "answer": "{{i}}"}""").ToArray());
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0.25, Seed = 3 });
        Assert.Equal((15, 5), (task.TrainCount, task.EvalCount));
        var train = Enumerable.Range(0, 15).Select(i => task.Example(DataSplit.Train, i).Prompt).ToHashSet();
        var eval = Enumerable.Range(0, 5).Select(i => task.Example(DataSplit.Test, i).Prompt).ToHashSet();
        Assert.Equal(15, train.Count);
        Assert.Empty(train.Intersect(eval));

        string evalPath = Jsonl("held.jsonl", """{"prompt": "e", "answer": "x"}""");
        var withFile = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalPath = evalPath });
        Assert.Equal((20, 1), (withFile.TrainCount, withFile.EvalCount));
        Assert.Equal("e", withFile.Example(DataSplit.Test, 3).Prompt);
    }

    [Fact]
    public void Missing_field_names_file_line_and_the_fields_present()
    {
        string path = Jsonl("d.jsonl", """{"prompt": "a", "answer": "b"}""", """{"question": "a", "answer": "b"}""");
        var e = Fails(new DatasetOptions { TrainPath = path });
        Assert.StartsWith("d.jsonl:2: missing field 'prompt' (or 'messages'); the row's fields are: question, answer", e.Message);
    }

    [Fact]
    public void Wrong_type_is_reported()
    {
        string path = Jsonl("d.jsonl", """{"prompt": ["a"], "answer": "b"}""");
        Assert.StartsWith("d.jsonl:1: field 'prompt' must be text, got a list", Fails(new DatasetOptions { TrainPath = path }).Message);
        string answer = Jsonl("e.jsonl", """{"prompt": "a", "answer": {"x": 1}}""");
        Assert.StartsWith("e.jsonl:1: field 'answer' must be text or a number, got an object", Fails(new DatasetOptions { TrainPath = answer }).Message);
        string role = Jsonl("f.jsonl", """{"messages": [{"role": "robot", "content": "hi"}], "answer": "b"}""");
        Assert.StartsWith("f.jsonl:1: messages[0] has role 'robot'", Fails(new DatasetOptions { TrainPath = role }).Message);
    }

    [Fact]
    public void Skip_policy_counts_malformed_rows()
    {
        string path = Jsonl("d.jsonl", """{"prompt": "a", "answer": "b"}""", "not json", """{"prompt": 3, "answer": "b"}""", """{"prompt": "c", "answer": "d"}""");
        Assert.StartsWith("d.jsonl:2: not valid JSON", Fails(new DatasetOptions { TrainPath = path }).Message);
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, OnMalformed = MalformedRowPolicy.Skip });
        Assert.Equal((2, 2), (task.TrainCount, task.SkippedRows));
    }

    [Fact]
    public void Empty_and_missing_files_are_errors()
    {
        string empty = Jsonl("empty.jsonl");
        Assert.Equal($"{empty}: the dataset file holds no rows", Fails(new DatasetOptions { TrainPath = empty }).Message);
        string bad = Jsonl("bad.jsonl", "[1]", "{");
        Assert.StartsWith($"{bad}: no usable rows (2 skipped; the first: bad.jsonl:1: not a JSON object)",
            Fails(new DatasetOptions { TrainPath = bad, OnMalformed = MalformedRowPolicy.Skip }).Message);
        Assert.EndsWith("nope.jsonl: dataset file not found", Fails(new DatasetOptions { TrainPath = temp.File("nope.jsonl") }).Message);
        string csv = Jsonl("d.csv", "a,b");
        Assert.EndsWith("unknown dataset format '.csv' (the formats are: .jsonl, .parquet)", Fails(new DatasetOptions { TrainPath = csv }).Message);
        string one = Jsonl("one.jsonl", """{"prompt": "a", "answer": "b"}""");
        Assert.Contains("leave no training examples", Fails(new DatasetOptions { TrainPath = one, EvalFraction = 0.9 }).Message);
    }

    [Fact]
    public async Task Parquet_rows_with_scalars_and_a_messages_list_are_read()
    {
        var schema = new ParquetSchema(
            new DataField<string>("prompt", true),
            new DataField<long>("answer"),
            new ListField("messages", new StructField("element", new DataField<string>("role"), new DataField<string>("content"))));
        var rows = new List<IDictionary<string, object?>>
        {
            new Dictionary<string, object?> { ["prompt"] = "2*3?", ["answer"] = 6L, ["messages"] = new List<Dictionary<string, object>>() },
            new Dictionary<string, object?>
            {
                ["prompt"] = null, ["answer"] = 9L,
                ["messages"] = new List<Dictionary<string, object>> { new() { ["role"] = "user", ["content"] = "3*3?" } },
            },
        };
        string path = temp.File("d.parquet");
        await using (FileStream s = File.Create(path))
        {
            await ParquetSerializer.SerializeUntypedAsync(rows, schema, s);
        }

        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, Shuffle = false });
        Assert.Equal(("2*3?", "6"), (task.Example(DataSplit.Train, 0).Prompt, task.Example(DataSplit.Train, 0).Reference));
        TaskExample chat = task.Example(DataSplit.Train, 1);
        Assert.Equal(("3*3?", "9", "d.parquet: row group 1, row 2"), (chat.Prompt, chat.Reference, chat.Source));
        Assert.Equal([new ChatTurn("user", "3*3?")], chat.Messages!);
    }

    [Fact]
    public async Task Parquet_with_another_schema_names_the_columns_it_has()
    {
        var schema = new ParquetSchema(new DataField<string>("question"), new DataField<double>("score"));
        string path = temp.File("other.parquet");
        await using (FileStream s = File.Create(path))
        {
            await ParquetSerializer.SerializeUntypedAsync([new Dictionary<string, object?> { ["question"] = "q", ["score"] = 0.5 }], schema, s);
        }

        Assert.StartsWith("other.parquet: row group 1, row 1: missing field 'prompt' (or 'messages'); the row's fields are: question, score",
            Fails(new DatasetOptions { TrainPath = path }).Message);
        string junk = temp.File("junk.parquet");
        File.WriteAllText(junk, "not parquet at all");
        Assert.StartsWith("junk.parquet: not a readable Parquet file", Fails(new DatasetOptions { TrainPath = junk }).Message);
    }

    [Fact]
    public void The_reward_scores_with_the_example_fields_and_a_throwing_reward_names_the_example()
    {
        string path = Jsonl("d.jsonl", """{"prompt": "a", "answer": "b", "target": "42"}""");
        var fields = Rewards.FromFunction((prompt, completion, f) => completion == f["target"] ? 1 : 0);
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0 }, fields);
        TaskExample e = task.Example(DataSplit.Train, 0);
        Assert.Equal(new RewardResult(1, true), task.Score(e, "42"));
        var throwing = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0 },
            Rewards.FromFunction((_, _, f) => double.Parse(f["missing"], System.Globalization.CultureInfo.InvariantCulture)));
        var error = Assert.Throws<EngineException>(() => throwing.Score(e, "x"));
        Assert.StartsWith("the reward failed on example d.jsonl:1: KeyNotFoundException:", error.Message);
    }
}

/// <summary>A dataset file, a reward spec and SFT through the public API, as an embedding application uses them.</summary>
public sealed class DatasetEndToEndTests : IDisposable
{
    private readonly TempDir temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Sft_on_a_jsonl_dataset_learns_it_and_the_saved_model_loads_back_with_its_tokenizer()
    {
        // Doubling single digits: "3" -> "6"; a tiny model learns it in 150 steps.
        string path = temp.File("double.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, 10).Select(i => $$"""{"prompt": "{{i}}*2=", "answer": {{2 * i}}}"""));
        var task = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, EvalPath = path, Seed = 1 }, Rewards.Parse("numeric"));
        using var model = LanguageModel.CreateForTask(task, new ModelOptions { Layers = 1, Dim = 32, Heads = 2, MaxPositions = 16 }, "cpu");
        using (SftSession sft = model.StartSft(task, new SftOptions { Steps = 150, BatchSize = 10, LearningRate = 1e-2f, WarmupSteps = 5, MinLearningRateFraction = 1f, EvalExamples = 10 }))
        {
            SftStepMetrics last = sft.Step();
            while (sft.StepsDone < 150)
            {
                last = sft.Step();
            }

            double accuracy = sft.Evaluate(10).GreedyAccuracy;
            Assert.True(accuracy >= 0.9, $"SFT did not learn the 10 examples: accuracy {accuracy}, last loss {last.Loss}");
        }

        string saved = temp.File("model");
        model.Save(saved, "bf16");
        using var reloaded = LanguageModel.Load(saved, "cpu");
        Assert.Equal(model.VocabSize, reloaded.VocabSize);
        Assert.Equal("0*2=", reloaded.Decode(reloaded.Encode("0*2=")));
    }
}
