using System.Diagnostics;
using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Training;

namespace Engine.Rl;

/// <summary>
/// The GRPO/DAPO loop (rl-core.md): rollout with the generation engine -> reward -> dynamic-sampling
/// filter with refill up to max_generation_batches -> group advantages -> PPO epochs over
/// mini-batches with the old log-probs fixed -> AdamW. Every random choice is keyed by (seed,
/// step), so a run resumed from a checkpoint continues bit-identically on the CPU.
/// </summary>
internal sealed class RlTrainer : IDisposable
{
    private readonly Transformer policy;
    private readonly Transformer? reference;
    private readonly TaskCodec codec;
    private readonly ITask task;
    private readonly PolicyUpdate update;

    public RlTrainer(Transformer policy, TaskCodec codec, ITask task, RlOptions options, Generator? generator = null)
    {
        options.Validate();
        this.policy = policy;
        this.codec = codec;
        this.task = task;
        Options = options;
        OwnsGenerator = generator is null;
        Generator = generator ?? new Generator(policy, new GeneratorOptions
        {
            MaxSlots = options.MaxConcurrentSequences, KvBudgetBytes = (long)options.KvCacheMb << 20,
            Sampler = Samplers.Parse(options.Sampler),
        });
        Optimizer = new AdamWOptimizer(policy, new AdamWOptions
        {
            LearningRate = options.LearningRate, Beta1 = options.Beta1, Beta2 = options.Beta2, WeightDecay = options.WeightDecay,
            MaxGradNorm = options.MaxGradNorm,
        });
        update = new PolicyUpdate(policy);
        if (options.KlCoef > 0)
        {
            reference = new Transformer(policy.Acc, policy.Config);
            policy.Acc.Copy(reference.Params.All, policy.Params.All);
        }
    }

    public RlOptions Options { get; }

    public Generator Generator { get; }

    public AdamWOptimizer Optimizer { get; }

    /// <summary>The frozen reference policy, when a KL term is on.</summary>
    public Transformer? Reference => reference;

    /// <summary>RL steps completed.</summary>
    public int StepsDone { get; set; }

    private bool OwnsGenerator { get; }

    /// <summary>Test accuracy of the current policy: greedy, and avg@k at the rollout temperature.</summary>
    public Evaluation Evaluate(int? count = null) =>
        Evaluator.Run(Generator, codec, task, Options.MaxNewTokens, count ?? Options.EvalExamples, Options.EvalSamples, Options.Temperature,
            Options.Seed);

    /// <summary>Runs one RL step and returns its metrics.</summary>
    public RlStepMetrics Step()
    {
        RlOptions o = Options;
        int step = StepsDone;
        long samplingStart = Stopwatch.GetTimestamp();
        var kept = new List<List<RolloutSequence>>();
        int generated = 0, batches = 0;
        long tokensGenerated = 0;
        double rewardSum = 0, lengthSum = 0;
        int correct = 0, responses = 0;
        while (kept.Count < o.PromptsPerStep && batches < o.MaxGenerationBatches)
        {
            long cursor = ((long)step * o.MaxGenerationBatches + batches) * o.PromptsPerStep;
            var examples = Enumerable.Range(0, o.PromptsPerStep).Select(i => task.Example(DataSplit.Train, cursor + i)).ToArray();
            var groups = Generator.Generate(examples.Select(e => codec.Prompt(e.Prompt)).ToArray(), o.SamplesPerPrompt, new SamplingOptions
            {
                MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopP = o.TopP, TopK = o.TopK, Seed = o.Seed,
                EosTokenIds = [codec.Eos],
            }, sequenceIdBase: cursor * o.SamplesPerPrompt);
            batches++;
            for (int g = 0; g < groups.Count; g++)
            {
                var group = Score(groups[g], examples[g], kept.Count);
                generated++;
                foreach (RolloutSequence s in group)
                {
                    tokensGenerated += s.Response.Length;
                    rewardSum += s.Reward;
                    lengthSum += s.Response.Length;
                    correct += s.Correct ? 1 : 0;
                    responses++;
                }

                if (!o.DynamicSampling || !Advantages.AllEqual(group.Select(s => s.Reward).ToArray()))
                {
                    if (kept.Count < o.PromptsPerStep)
                    {
                        kept.Add(group);
                    }
                }
            }
        }

        double samplingSeconds = Stopwatch.GetElapsedTime(samplingStart).TotalSeconds;
        long trainStart = Stopwatch.GetTimestamp();
        var sequences = kept.SelectMany(g => g).ToList();
        double[] totals = new double[PolicyLossStats.Count];
        double gradNorm = 0, lr = 0;
        long tokensTrained = 0;
        if (sequences.Count > 0)
        {
            if (reference is not null)
            {
                PolicyUpdate.ReferenceLogProbs(reference, sequences, o.MicroBatchSequences);
            }

            if (o.KlInReward && reference is not null)
            {
                foreach (RolloutSequence s in sequences)
                {
                    double kl = 0;
                    for (int j = 0; j < s.Response.Length; j++)
                    {
                        kl += s.Mask[j] * KlMath.Estimate(s.OldLogProbs[j], s.RefLogProbs![j], o.Estimator).Value;
                    }

                    s.Reward -= o.KlCoef * kl;
                }
            }

            foreach (var group in kept)
            {
                double[] rewards = group.Select(s => s.Reward).ToArray();
                var adv = new double[rewards.Length];
                Advantages.Group(rewards, adv, o.NormalizeAdvantageByStd);
                for (int i = 0; i < group.Count; i++)
                {
                    group[i].Advantage = adv[i];
                }
            }

            (gradNorm, lr, tokensTrained) = Train(sequences, step, totals);
        }

        double trainingSeconds = Stopwatch.GetElapsedTime(trainStart).TotalSeconds;
        StepsDone = step + 1;
        double tokens = Math.Max(totals[PolicyLossStats.Tokens], 1e-12);
        Evaluation? test = o.EvalEvery > 0 && StepsDone % o.EvalEvery == 0 ? Evaluate() : null;
        return new RlStepMetrics
        {
            Step = StepsDone,
            RewardMean = rewardSum / Math.Max(responses, 1),
            Accuracy = (double)correct / Math.Max(responses, 1),
            ResponseLength = lengthSum / Math.Max(responses, 1),
            Entropy = totals[PolicyLossStats.Entropy] / tokens,
            ClipFractionHigh = totals[PolicyLossStats.ClipHigh] / tokens,
            ClipFractionLow = totals[PolicyLossStats.ClipLow] / tokens,
            RatioMean = totals[PolicyLossStats.Ratio] / tokens,
            ApproxKl = totals[PolicyLossStats.ApproxKl] / tokens,
            RefKl = totals[PolicyLossStats.RefKl] / tokens,
            Loss = totals[PolicyLossStats.Loss] / Math.Max(1, o.Epochs * o.MiniBatches),
            GradNorm = gradNorm,
            LearningRate = lr,
            GroupsKept = kept.Count,
            GroupsGenerated = generated,
            GenerationBatches = batches,
            TokensGenerated = tokensGenerated,
            TokensTrained = tokensTrained,
            SamplingSeconds = samplingSeconds,
            TrainingSeconds = trainingSeconds,
            TokensPerSecond = (tokensGenerated + tokensTrained) / Math.Max(samplingSeconds + trainingSeconds, 1e-9),
            TestAccuracy = test?.Accuracy,
            TestGreedyAccuracy = test?.GreedyAccuracy,
        };
    }

    public void Dispose()
    {
        update.Dispose();
        Optimizer.Dispose();
        reference?.Dispose();
        if (OwnsGenerator)
        {
            Generator.Dispose();
        }
    }

    /// <summary>Linear warm-up to the learning rate, then constant (DAPO).</summary>
    internal float LearningRateAt(int optimizerStep) =>
        Options.WarmupSteps > 0 && optimizerStep < Options.WarmupSteps
            ? Options.LearningRate * (optimizerStep + 1) / Options.WarmupSteps
            : Options.LearningRate;

    /// <summary>Scores one group's responses: task reward plus shaping; builds the sequences.</summary>
    private List<RolloutSequence> Score(GenerationGroup group, TaskExample example, int groupIndex)
    {
        RlOptions o = Options;
        var result = new List<RolloutSequence>(group.Samples.Count);
        foreach (GeneratedSequence s in group.Samples)
        {
            RewardResult verdict = task.Score(example, codec.Decode(s.TokenIds));
            bool truncated = s.FinishReason == FinishReason.Length;
            double reward = verdict.Reward;
            if (o.SoftOverlongPunishment)
            {
                reward += o.OverlongPenaltyFactor * Advantages.SoftOverlongPenalty(s.TokenIds.Count, o.MaxNewTokens, o.OverlongBuffer);
            }

            var mask = new float[s.TokenIds.Count];
            Array.Fill(mask, o.OverlongFiltering && truncated ? 0f : 1f);
            result.Add(new RolloutSequence
            {
                Group = groupIndex,
                Prompt = [.. group.PromptTokenIds],
                Response = [.. s.TokenIds],
                OldLogProbs = [.. s.PolicyLogProbs],
                Mask = mask,
                Reward = reward,
                Correct = verdict.Correct,
                Truncated = truncated,
            });
        }

        return result;
    }

    /// <summary>PPO epochs over mini-batches; returns the last grad norm and learning rate and the tokens trained.</summary>
    private (double GradNorm, double LearningRate, long Tokens) Train(List<RolloutSequence> sequences, int step, double[] totals)
    {
        RlOptions o = Options;
        var settings = new PolicyLossSettings(o.EpsLow, o.EpsHigh, o.DualClip, o.KlInReward ? 0 : o.KlCoef, o.Estimator, o.EntropyCoef);
        int normLength = o.LossNormLength > 0 ? o.LossNormLength : o.MaxNewTokens;
        double gradNorm = 0, lr = 0;
        long tokens = 0;
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            int[] order = Shuffle(sequences.Count, step, epoch);
            for (int mb = 0; mb < o.MiniBatches; mb++)
            {
                int from = (int)((long)mb * order.Length / o.MiniBatches), to = (int)((long)(mb + 1) * order.Length / o.MiniBatches);
                var batch = order[from..to].Select(i => sequences[i]).ToList();
                float[][] weights = LossWeights.Compute(batch.Select(s => s.Mask).ToList(), o.Aggregation, normLength);
                policy.ZeroGradients();
                double[] stats = update.Accumulate(batch, weights, settings, o.MicroBatchSequences, reference is not null && !o.KlInReward);
                for (int k = 0; k < stats.Length; k++)
                {
                    totals[k] += stats[k];
                }

                lr = LearningRateAt(Optimizer.StepCount);
                Optimizer.Step((float)lr);
                gradNorm = Optimizer.LastGradNorm();
                tokens += batch.Sum(s => (long)s.Length);
            }
        }

        return (gradNorm, lr, tokens);
    }

    /// <summary>A permutation keyed by (seed, step, epoch), so a resumed run shuffles identically.</summary>
    private int[] Shuffle(int n, int step, int epoch)
    {
        int[] order = Enumerable.Range(0, n).ToArray();
        var rng = new Util.SplitMix64(Options.Seed * 0x9E3779B97F4A7C15UL ^ ((ulong)step << 20) ^ (ulong)epoch);
        for (int i = n - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }
}
