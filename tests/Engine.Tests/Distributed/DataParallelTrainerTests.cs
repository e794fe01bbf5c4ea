using Engine.Core;
using Engine.Distributed;
using Engine.Model;
using Engine.Rl;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;
using static Engine.Tests.Support.RlSessions;

namespace Engine.Tests.Distributed;

/// <summary>
/// The trainers' data-parallel split with ranks as threads of this process (no MPI): the same sampled
/// completions as one process, losses and weights equal within float rounding, and the same bits on every rank.
/// </summary>
public sealed class DataParallelTrainerTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]   // 6 prompts over 3 ranks; mini-batches mix every rank's sequences
    public void Rl_steps_on_several_ranks_match_one_process(int ranks)
    {
        // Dynamic sampling with refill batches, 2 mini-batches, micro-batches smaller than a rank's share.
        RlOptions options = Tiny(RlOptions.Dapo()) with { Steps = 2, MaxGenerationBatches = 3 };
        var single = TrainRl(1, options)[0];
        var split = TrainRl(ranks, options);
        for (int r = 1; r < ranks; r++)
        {
            Assert.Equal(split[0].Weights, split[r].Weights); // every rank applied the same update
        }

        for (int step = 0; step < options.Steps; step++)
        {
            RlStepMetrics one = single.Metrics[step], many = split[0].Metrics[step];
            Assert.Equal((one.RewardMean, one.ResponseLength, one.GroupsKept, one.GroupsGenerated, one.TokensGenerated, one.TokensTrained),
                (many.RewardMean, many.ResponseLength, many.GroupsKept, many.GroupsGenerated, many.TokensGenerated, many.TokensTrained));
            Assert.Equal(one.Loss, many.Loss, 5);
            Assert.Equal(one.GradNorm, many.GradNorm, 4);
            Assert.Equal(one.Entropy, many.Entropy, 5);
        }

        AssertClose(single, split[0], options.LearningRate, ranks);
    }

    [Fact]
    public void Sft_steps_on_two_ranks_match_one_process_with_rows_of_unequal_lengths()
    {
        var options = new SftOptions { Steps = 3, BatchSize = 5, LearningRate = 1e-2f, WarmupSteps = 0, EvalEvery = 0, EvalExamples = 4 };
        var single = TrainSft(1, options)[0];
        var split = TrainSft(2, options);
        Assert.Equal(split[0].Weights, split[1].Weights);
        for (int step = 0; step < options.Steps; step++)
        {
            Assert.Equal(single.SftMetrics[step].Loss, split[0].SftMetrics[step].Loss, 5);
            Assert.Equal(single.SftMetrics[step].GradNorm, split[0].SftMetrics[step].GradNorm, 4);
        }

        AssertClose(single, split[0], options.LearningRate, 2);
    }

    /// <summary>
    /// The first step's summed gradients equal one process's within float rounding (relative 1e-5). Later weights
    /// only within a fraction of the learning rate: AdamW divides by sqrt(v) + 1e-8, so a rounding-sized change of
    /// a near-zero gradient (~1e-8) moves its weight by a visible part of the learning rate.
    /// </summary>
    private static void AssertClose(Run single, Run split, float learningRate, int ranks)
    {
        double gradError = Compare.RelativeError(single.FirstGradients, split.FirstGradients);
        Assert.True(gradError < 1e-5, $"the first step's gradients differ by {gradError:E2} (relative) between 1 and {ranks} ranks");
        double largest = single.Weights.Zip(split.Weights, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(largest < 0.25 * learningRate, $"weights differ by {largest} between 1 and {ranks} ranks (learning rate {learningRate})");
    }

    private static (Transformer Model, TaskCodec Codec) NewPolicy(Accelerator acc, string alphabet)
    {
        var tokenizer = new CharTokenizer(alphabet);
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, 32, 1, 2, 16) with { EosTokenIds = [tokenizer.EosTokenId!.Value] };
        var model = new Transformer(acc, config);
        ModelInit.Initialize(model, 3, 0.1f);
        return (model, TaskCodec.For(tokenizer, config.EosTokenIds));
    }

    private sealed record Run(List<object> Steps, float[] Weights, float[] FirstGradients)
    {
        public List<RlStepMetrics> Metrics => Steps.Cast<RlStepMetrics>().ToList();

        public List<SftStepMetrics> SftMetrics => Steps.Cast<SftStepMetrics>().ToList();
    }

    private static Run[] TrainRl(int ranks, RlOptions options) =>
        InProcessGroup.Run(ranks, comm =>
        {
            using var acc = TestDevices.Cpu(1);
            var task = new SevenTask();
            var (model, codec) = NewPolicy(acc, task.Alphabet);
            using Transformer policy = model;
            using var trainer = new RlTrainer(policy, codec, task, options with { MiniBatches = 1 })
            {
                Parallel = ranks > 1 ? new DataParallel(comm, bucketFloats: 1000) : null,
            };
            var steps = new List<object> { trainer.Step() };
            float[] first = acc.ToArray(policy.Grads!.All);
            steps.AddRange(Enumerable.Range(1, options.Steps - 1).Select(_ => (object)trainer.Step()));
            return new Run(steps, acc.ToArray(policy.Params.All), first);
        });

    private static Run[] TrainSft(int ranks, SftOptions options) =>
        InProcessGroup.Run(ranks, comm =>
        {
            using var acc = TestDevices.Cpu(1);
            var task = new VaryingLengthTask();
            var (model, codec) = NewPolicy(acc, task.Alphabet);
            using Transformer policy = model;
            using var trainer = new SftTrainer(policy, codec, task, options) { Parallel = ranks > 1 ? new DataParallel(comm) : null };
            var steps = new List<object> { trainer.Step() };
            float[] first = acc.ToArray(policy.Grads!.All);
            steps.AddRange(Enumerable.Range(1, options.Steps - 1).Select(_ => (object)trainer.Step()));
            return new Run(steps, acc.ToArray(policy.Params.All), first);
        });

    /// <summary>References of 1 to 3 characters, so the ranks' rows hold different numbers of target tokens.</summary>
    private sealed class VaryingLengthTask : ITask
    {
        public string Name => "varying";

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 3;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}=", new string('7', 1 + (int)(index % 3)));

        public RewardResult Score(TaskExample example, string response) => new(response == example.Reference ? 1 : 0, response == example.Reference);
    }
}
