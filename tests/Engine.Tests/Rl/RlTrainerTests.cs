using Engine.Core;
using Engine.Model;
using Engine.Rl;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;
using Xunit.Abstractions;

namespace Engine.Tests.Rl;

/// <summary>The GRPO/DAPO loop end to end on tiny tasks.</summary>
public sealed class RlTrainerTests(ITestOutputHelper output) : IDisposable
{
    private readonly Accelerator acc = TestDevices.Cpu();

    /// <summary>A task an untrained policy can learn in seconds: answer with the digit 7.</summary>
    private sealed class SevenTask : ITask
    {
        public string Name => "seven";

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 1;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}{(index / 10) % 10}=", "7");

        public RewardResult Score(TaskExample example, string response) =>
            response.StartsWith('7') ? new RewardResult(1, response == "7") : new RewardResult(0, false);
    }

    private (Transformer Model, TaskCodec Codec) NewPolicy(ulong seed = 3)
    {
        var tokenizer = new CharTokenizer("0123456789=");
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, 32, 1, 2, 16) with { EosTokenIds = [tokenizer.EosTokenId!.Value] };
        var model = new Transformer(acc, config);
        ModelInit.Initialize(model, seed, 0.1f);
        return (model, TaskCodec.For(tokenizer, config.EosTokenIds));
    }

    private static RlOptions Tiny(RlOptions preset) => preset with
    {
        Steps = 20, PromptsPerStep = 8, SamplesPerPrompt = 8, MaxNewTokens = 3, OverlongBuffer = 1, LearningRate = 3e-2f, WarmupSteps = 0,
        EvalEvery = 0, EvalExamples = 16, MaxConcurrentSequences = 32, KvCacheMb = 8,
    };

    [Theory]
    [InlineData("grpo")]
    [InlineData("dapo")]
    public void Reward_rises_on_a_tiny_task(string algo)
    {
        var (model, codec) = NewPolicy();
        using Transformer policy = model;
        var options = Tiny(algo == "grpo" ? RlOptions.Grpo() : RlOptions.Dapo());
        using var trainer = new RlTrainer(policy, codec, new SevenTask(), options);
        var rewards = new List<double>();
        for (int i = 0; i < options.Steps; i++)
        {
            rewards.Add(trainer.Step().RewardMean);
        }

        double first = rewards.Take(3).Average(), last = rewards.TakeLast(3).Average();
        output.WriteLine($"{algo}: reward mean {first:F3} (first 3 steps) -> {last:F3} (last 3 steps)");
        Assert.True(last > first + 0.3, $"{algo}: reward did not rise enough ({first:F3} -> {last:F3})");
    }

    [Fact]
    public void First_epoch_ratios_are_exactly_one_because_sampler_and_trainer_agree()
    {
        var (model, codec) = NewPolicy();
        using Transformer policy = model;
        using var trainer = new RlTrainer(policy, codec, new SevenTask(), Tiny(RlOptions.Dapo()) with { DynamicSampling = false });
        RlStepMetrics m = trainer.Step();
        Assert.Equal(1.0, m.RatioMean, 12);
        Assert.Equal(0.0, m.ApproxKl, 12);
        Assert.Equal(0.0, m.ClipFractionHigh);
        Assert.Equal(0.0, m.ClipFractionLow);
    }

    [Theory]
    [InlineData("token-mean")]
    [InlineData("seq-mean-token-mean")]
    [InlineData("seq-mean-token-sum-norm")]
    public void Micro_batches_do_not_change_the_loss_or_gradients(string aggregation)
    {
        var (model, _) = NewPolicy();
        using Transformer policy = model;
        var rng = new Random(4);
        var sequences = Enumerable.Range(0, 11).Select(i =>
        {
            int p = 2 + rng.Next(4), r = 1 + rng.Next(6);
            return new RolloutSequence
            {
                Group = i / 4,
                Prompt = TestData.Ints(100 + i, p, 12),
                Response = TestData.Ints(200 + i, r, 12),
                BehaviourLogProbs = TestData.Uniform(300 + i, r, 0.5f).Select(x => x - 2.5f).ToArray(),
                Mask = Enumerable.Range(0, r).Select(_ => rng.NextDouble() < 0.8 ? 1f : 0f).ToArray(),
                Advantage = rng.NextDouble() * 2 - 1,
            };
        }).ToList();
        var options = RlOptions.Dapo() with { LossAggregation = Enum.Parse<LossAggregation>(aggregation.Replace("-", ""), ignoreCase: true) };
        float[][] weights = LossWeights.Compute(sequences.Select(x => x.Mask).ToList(), options.Aggregation, 8);
        using var batch = new RolloutBatch(acc);
        batch.Reset(sequences);
        batch.UploadPerSequence(RolloutColumn.Advantage, s => (float)s.Advantage);
        for (int i = 0; i < sequences.Count; i++)
        {
            batch.Upload(RolloutColumn.Weight, i, weights[i]);
        }

        using var surrogate = new ClippedSurrogateTerm(acc, new PolicyLossSettings(0.2f, 0.28f, 0));
        using var entropy = new EntropyBonusTerm(acc, 0.01f);
        LossTerm[] terms = [surrogate, entropy];
        int[] all = Enumerable.Range(0, sequences.Count).ToArray();

        (double[] Stats, float[] Grads) Run(int micro)
        {
            using var update = new PolicyUpdate(policy);
            policy.ZeroGradients();
            update.Accumulate(batch, all, terms, micro);
            double[] stats = surrogate.TakeStats();
            entropy.TakeStats();
            return (stats, acc.ToArray(policy.Grads!.All));
        }

        var whole = Run(64);
        var split = Run(3);
        double err = Compare.RelativeError(whole.Grads, split.Grads);
        output.WriteLine($"{aggregation}: gradients with micro-batches of 11 vs 3 sequences differ by {err:E2}; loss {whole.Stats[0]:G9} vs {split.Stats[0]:G9}");
        Assert.True(err < 1e-5, $"micro-batching changed the gradients by {err:E2}");
        Assert.Equal(whole.Stats[PolicyLossStats.Loss], split.Stats[PolicyLossStats.Loss], 5);
        Assert.Equal(whole.Stats[PolicyLossStats.Tokens], split.Stats[PolicyLossStats.Tokens]);
    }

    [Fact]
    public void Dynamic_sampling_keeps_only_groups_with_mixed_rewards()
    {
        var (model, codec) = NewPolicy();
        using Transformer policy = model;
        using var trainer = new RlTrainer(policy, codec, new SevenTask(), Tiny(RlOptions.Dapo()) with { MaxGenerationBatches = 2 });
        RlStepMetrics m = trainer.Step();
        Assert.True(m.GroupsKept <= m.GroupsGenerated);
        Assert.True(m.GenerationBatches is >= 1 and <= 2);
        Assert.True(m.GroupsKept <= 8);
    }

    [Fact]
    public void A_kl_reference_is_frozen_and_reported()
    {
        var (model, codec) = NewPolicy();
        using Transformer policy = model;
        using var trainer = new RlTrainer(policy, codec, new SevenTask(), Tiny(RlOptions.Dapo()) with { KlCoef = 0.1f, DynamicSampling = false });
        float[] before = acc.ToArray(trainer.Reference!.Params.All);
        RlStepMetrics first = trainer.Step();
        RlStepMetrics second = trainer.Step();
        Assert.Equal(before, acc.ToArray(trainer.Reference!.Params.All));
        Assert.Equal(0.0, first.RefKl, 6);
        Assert.True(second.RefKl > 0, "after an update the policy must differ from the reference");
    }

    [Fact]
    public void A_resumed_run_continues_bit_identically()
    {
        using var temp = new TempDir();
        RunOptions options = new()
        {
            Task = new TaskOptions { Name = "sorting", Parameters = "min_length=2,max_length=3" },
            Model = new ModelOptions { Layers = 1, Dim = 32, Heads = 2, MaxPositions = 16 },
            Sft = new SftOptions { Steps = 3, BatchSize = 8, EvalExamples = 8 },
            Rl = RlOptions.Dapo() with
            {
                Steps = 4, CheckpointEvery = 2, PromptsPerStep = 4, SamplesPerPrompt = 4, MaxNewTokens = 4, OverlongBuffer = 1,
                EvalEvery = 2, EvalExamples = 8, LearningRate = 1e-3f, WarmupSteps = 1, KvCacheMb = 8, MaxConcurrentSequences = 16,
            },
        };
        string straight = Path.Combine(temp.Path, "straight"), resumed = Path.Combine(temp.Path, "resumed");
        TrainingRun.Execute(options, straight);
        TrainingRun.Execute(options, resumed);

        // Lose the end of the second run, as if it had been killed after step 2, and resume it.
        Directory.Delete(Path.Combine(resumed, "checkpoints", "rl-000004"), recursive: true);
        var lines = File.ReadAllLines(Path.Combine(resumed, "metrics.jsonl"));
        File.WriteAllLines(Path.Combine(resumed, "metrics.jsonl"), lines.Take(lines.Length - 1));
        TrainingRun.Execute(options with { Rl = options.Rl! with { Steps = 99 } }, resumed, resume: true);

        byte[] a = File.ReadAllBytes(Path.Combine(straight, "checkpoints", "rl-000004", "model", "model.safetensors"));
        byte[] b = File.ReadAllBytes(Path.Combine(resumed, "checkpoints", "rl-000004", "model", "model.safetensors"));
        Assert.Equal(a, b);
        Assert.Equal(StripTimes(File.ReadAllLines(Path.Combine(straight, "metrics.jsonl"))),
            StripTimes(File.ReadAllLines(Path.Combine(resumed, "metrics.jsonl"))));
        Assert.True(File.Exists(Path.Combine(resumed, "report.html")));
    }

    public void Dispose() => acc.Dispose();

    /// <summary>Metrics lines without the wall-clock fields, which differ between runs.</summary>
    private static string[] StripTimes(string[] lines) =>
        lines.Select(l =>
        {
            var o = System.Text.Json.Nodes.JsonNode.Parse(l)!.AsObject();
            foreach (string k in new[] { "sampling_seconds", "training_seconds", "tokens_per_second" })
            {
                o.Remove(k);
            }

            return o.ToJsonString();
        }).ToArray();
}
