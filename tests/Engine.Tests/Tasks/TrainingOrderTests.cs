using Engine.Model;
using Engine.Pike;
using Engine.Rl;
using Engine.Tasks;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Tests.Tasks;

/// <summary>sft.seed and rl.seed choose the order of the training examples; task.seed chooses the task.</summary>
public sealed class TrainingOrderTests : IDisposable
{
    private readonly TempDir temp = new();
    private readonly Core.Accelerator acc = TestDevices.Cpu();

    public void Dispose()
    {
        acc.Dispose();
        temp.Dispose();
    }

    private static string[] Prompts(ITask task, ulong seed, int count, long from = 0) =>
        [.. Enumerable.Range(0, count).Select(i => TrainingOrder.Example(task, seed, from + i).Prompt)];

    [Fact]
    public void A_dataset_is_shuffled_by_the_order_seed_each_epoch_whatever_its_split_seed()
    {
        string path = temp.File("n.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, 20).Select(i => $$"""{"prompt": "p{{i}}", "answer": "{{i}}"}"""));
        DatasetTask Load(ulong taskSeed) => DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, Seed = taskSeed });
        var task = Load(1);
        string[] all = [.. Enumerable.Range(0, 20).Select(i => $"p{i}").Order()];

        Assert.Equal(Prompts(task, 7, 40), Prompts(task, 7, 40));
        Assert.Equal(Prompts(task, 7, 40), Prompts(Load(2), 7, 40)); // no rows held out: task.seed does not move the order
        Assert.NotEqual(Prompts(task, 7, 20), Prompts(task, 8, 20));
        Assert.NotEqual(Prompts(task, 7, 20), Prompts(task, 7, 20, from: 20)); // reshuffled every epoch
        Assert.Equal(all, Prompts(task, 8, 20).Order());
        Assert.Equal(all, Prompts(task, 8, 20, from: 20).Order());

        var fileOrder = DatasetTask.Load(new DatasetOptions { TrainPath = path, EvalFraction = 0, Shuffle = false });
        Assert.Equal(Prompts(fileOrder, 7, 20), Prompts(fileOrder, 8, 20)); // no shuffle: file order whatever the seed
    }

    [Fact]
    public void A_generated_task_is_read_from_a_seed_dependent_point_of_its_stream()
    {
        ITask task = BuiltInTasks.Create("addition", 1);
        Assert.Equal(Prompts(task, 3, 50), Prompts(BuiltInTasks.Create("addition", 1), 3, 50));
        Assert.NotEqual(Prompts(task, 3, 50), Prompts(task, 4, 50));
        long start = TrainingOrder.StreamStart(3);
        Assert.InRange(start, 0, (1L << 62) - 1);
        Assert.Equal(task.Example(DataSplit.Train, start + 5).Prompt, TrainingOrder.Example(task, 3, 5).Prompt);
        Assert.Equal(Prompts(task, 3, 10, from: 1)[..9], Prompts(task, 3, 10)[1..]); // one stream, read in index order
    }

    [Fact]
    public void A_mixture_orders_each_task_by_the_seed_and_an_own_task_keeps_its_order()
    {
        MixedTask mix = MixedTask.Parse(["a=addition", "s=sorting"], 1);
        Assert.Equal(TrainingOrder.Example(mix.Tasks[1], 5, 3).Prompt, mix.TrainExample(1, 5, 3).Prompt);
        Assert.Equal(TrainingOrder.Example(mix.Tasks[0], 5, 2).Prompt, TrainingOrder.Example(mix, 5, 4).Prompt); // index 4 = task 0, index 2
        Assert.NotEqual(Prompts(mix, 5, 20), Prompts(mix, 6, 20));

        var own = new OwnTask();
        Assert.Equal(Prompts(own, 5, 10), Prompts(own, 6, 10));
        Assert.Equal("7=", TrainingOrder.Example(own, 5, 7).Prompt);
    }

    [Fact]
    public void The_trainers_take_their_examples_in_the_order_of_their_own_seed()
    {
        var tokenizer = new CharTokenizer("0123456789=");
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, 32, 1, 2, 16) with { EosTokenIds = [tokenizer.EosTokenId!.Value] };
        using var model = new Transformer(acc, config);
        ModelInit.Initialize(model, 3, 0.1f);
        TaskCodec codec = TaskCodec.For(tokenizer, config.EosTokenIds);

        var sftTask = new RecordingTask();
        using (var sft = new SftTrainer(model, codec, sftTask, new SftOptions { Steps = 2, BatchSize = 4, Seed = 11, EvalExamples = 4 }))
        {
            sft.Step();
            sft.Step();
        }

        Assert.Equal(Enumerable.Range(0, 8).Select(i => (11UL, (long)i)), sftTask.Requests);

        var rlTask = new RecordingTask();
        var rl = RlOptions.Grpo() with
        {
            Steps = 1, PromptsPerStep = 3, SamplesPerPrompt = 2, MaxNewTokens = 2, OverlongBuffer = 1, WarmupSteps = 0, EvalEvery = 0,
            EvalExamples = 4, MaxConcurrentSequences = 8, KvCacheMb = 4, Seed = 23,
        };
        using (var trainer = new RlTrainer(model, codec, rlTask, rl))
        {
            trainer.Step();
        }

        Assert.Equal(Enumerable.Range(0, 3).Select(i => (23UL, (long)i)), rlTask.Requests);
    }

    /// <summary>An application's own task: example i of either split is "i mod 10 =", answered 7.</summary>
    private class OwnTask : ITask
    {
        public string Name => "own";

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 1;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}=", "7");

        public RewardResult Score(TaskExample example, string response) => new(response == "7" ? 1 : 0, response == "7");
    }

    /// <summary>A task with a seeded order that records the (order seed, index) pairs the trainers ask for.</summary>
    private sealed class RecordingTask : OwnTask, ISeededTrainingOrder
    {
        public List<(ulong Seed, long Index)> Requests { get; } = [];

        public TaskExample TrainExample(ulong orderSeed, long index)
        {
            Requests.Add((orderSeed, index));
            return Example(DataSplit.Train, index);
        }
    }
}
