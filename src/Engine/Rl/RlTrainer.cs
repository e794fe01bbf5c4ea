using System.Diagnostics;
using Engine.Core;
using Engine.Distributed;
using Engine.Generation;
using Engine.Kdrl;
using Engine.MixedPolicy;
using Engine.Model;
using Engine.Tasks;
using Engine.Training;

namespace Engine.Rl;

/// <summary>
/// The RL step, assembled from its parts (rl-core.md): a rollout source samples groups -> rewards ->
/// the dynamic-sampling filter with refill up to max_generation_batches -> the columnar rollout batch
/// on the device -> frozen models score it (reference, teacher) -> an advantage estimator -> PPO
/// epochs over mini-batches whose loss is a list of loss terms -> AdamW. GRPO and DAPO are the
/// clipped surrogate and the entropy bonus (plus a KL term when asked for); KDRL adds the
/// distillation term. Every random choice is keyed by (seed, step), so a run resumed from a
/// checkpoint continues bit-identically on the CPU.
/// </summary>
internal sealed class RlTrainer : IDisposable
{
    private readonly Transformer policy;
    private readonly TaskCodec codec;
    private readonly ITask task;
    private readonly IRolloutSource source;
    private readonly IAdvantageEstimator advantages;
    private readonly FrozenModel? reference;
    private readonly FrozenModel? teacher;
    private readonly bool ownsTeacher;
    private readonly Guidance? guidance;
    private readonly List<LossTerm> terms = [];
    private readonly RolloutBatch batch;
    private readonly PolicyUpdate update;
    private readonly HashSet<RolloutSequence> remote = [];   // other ranks' sequences (rewards and masks only), in this step
    private DataParallel? parallel;

    /// <summary>
    /// Builds the step for <paramref name="options"/>. A <paramref name="teacher"/> or <paramref name="guide"/> given here (on the
    /// policy's device) wins over the options' checkpoint path; the trainer disposes them only when it owns them.
    /// </summary>
    public RlTrainer(Transformer policy, TaskCodec codec, ITask task, RlOptions options, Generator? generator = null, FrozenModel? teacher = null,
        bool ownsTeacher = false, FrozenModel? guide = null, bool ownsGuide = false)
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
            Sampler = options.SamplerMode,
        });
        Optimizer = new AdamWOptimizer(policy, new AdamWOptions
        {
            LearningRate = options.LearningRate, Beta1 = options.Beta1, Beta2 = options.Beta2, WeightDecay = options.WeightDecay,
            MaxGradNorm = options.MaxGradNorm, MaxNonfiniteSkips = options.MaxNonfiniteSkips,
        });
        source = new PolicySampler(Generator, codec, options);
        advantages = options.AdvantageMode == AdvantageEstimator.None ? new NoAdvantage() : new GroupAdvantage(options.NormalizeAdvantageByStd);
        batch = new RolloutBatch(policy.Acc);
        update = new PolicyUpdate(policy);
        try
        {
            if (options.KlCoef > 0)
            {
                reference = options.Reference.Length > 0
                    ? FrozenModel.Load(options.Reference, "reference", policy, codec.Tokenizer)
                    : FrozenModel.CopyOf(policy, "reference");
            }

            if (options.Distillation is KdOptions kd)
            {
                this.ownsTeacher = teacher is null || ownsTeacher;
                this.teacher = teacher ?? (kd.Teacher.Length > 0 ? FrozenModel.Load(kd.Teacher, "teacher", policy, codec.Tokenizer)
                    : throw new EngineException("kd: a teacher is needed (kd.teacher = a checkpoint directory, or a teacher model through the API)"));
            }

            if (options.Guidance is GuideOptions guideOptions)
            {
                FrozenModel model = guide ?? (guideOptions.Guide.Length > 0 ? FrozenModel.Load(guideOptions.Guide, "guide", policy, codec.Tokenizer)
                    : throw new EngineException("guide: a guiding policy is needed (guide.guide = a checkpoint directory, or a guide model through the API)"));
                guidance = new Guidance(model, guide is null || ownsGuide, codec, options);
            }

            terms.Add(new ClippedSurrogateTerm(policy.Acc, new PolicyLossSettings(options.EpsLow, options.EpsHigh, options.DualClip)));
            if (reference is not null && !options.KlInReward)
            {
                terms.Add(new ReferenceKlTerm(policy.Acc, options.KlCoef, options.Estimator));
            }

            terms.Add(new EntropyBonusTerm(policy.Acc, options.EntropyCoef));
            if (options.Distillation is KdOptions distillation)
            {
                terms.Add(new DistillationTerm(policy.Acc, distillation));
            }

            if (options.Guidance is GuideOptions offPolicy)
            {
                terms.Add(new OffPolicyTerm(policy.Acc, offPolicy, options.EpsLow, options.EpsHigh));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public RlOptions Options { get; }

    public Generator Generator { get; }

    public AdamWOptimizer Optimizer { get; }

    /// <summary>The frozen reference policy, when a KL term is on.</summary>
    public Transformer? Reference => reference?.Model;

    /// <summary>
    /// Data parallelism (null: one process): each rank samples whole groups for its share of every generation
    /// batch's prompts; the groups' rewards and masks are gathered so every rank takes the same keep decisions
    /// and mini-batch weights; each rank trains on its own kept sequences and the gradients are summed over ranks
    /// before every optimizer step.
    /// </summary>
    public DataParallel? Parallel
    {
        get => parallel;
        set
        {
            if (value is { Size: > 1 } && (guidance is not null || teacher is not null))
            {
                throw new EngineException("distributed RL does not support distillation (kd, kdrl) or a guiding policy (dapo-mixed) yet: run it in one process");
            }

            parallel = value;
        }
    }

    /// <summary>RL steps completed.</summary>
    public int StepsDone { get; set; }

    private bool OwnsGenerator { get; }

    /// <summary>Test accuracy of the current policy: greedy, and avg@k at the rollout temperature.</summary>
    public Evaluation Evaluate(int? count = null) =>
        Evaluator.Run(Generator, codec, task, Options.EvalMaxNewTokens > 0 ? Options.EvalMaxNewTokens : Options.MaxNewTokens, count ?? Options.EvalExamples,
            Options.EvalSamples, Options.Temperature,
            Options.Seed);

    /// <summary>Runs one RL step and returns its metrics.</summary>
    public RlStepMetrics Step()
    {
        using Activity? activity = EngineTelemetry.Source.StartActivity("engine.rl.step")?.SetTag("engine.step", StepsDone + 1);
        RlOptions o = Options;
        int step = StepsDone;
        long samplingStart = Stopwatch.GetTimestamp();
        AllReduceTotals? allReduceBefore = parallel?.Totals;
        remote.Clear();
        var kept = new List<List<RolloutSequence>>();
        var reused = new List<List<RolloutSequence>>();
        int generated = 0, batches = 0, dropped = 0, decodeSteps = 0;
        long peakKv = 0;
        var lengthPredictions = new List<(double Predicted, int Actual)>();
        long tokensGenerated = 0, guideTokensGenerated = 0;
        double rewardSum = 0, lengthSum = 0;
        int correct = 0, responses = 0;
        while (kept.Count < o.PromptsPerStep && batches < o.MaxGenerationBatches)
        {
            long cursor = ((long)step * o.MaxGenerationBatches + batches) * o.PromptsPerStep;
            var examples = Enumerable.Range(0, o.PromptsPerStep).Select(i => TrainingOrder.Example(task, o.Seed, cursor + i)).ToArray();
            var (from, to) = parallel?.Share(examples.Length) ?? (0, examples.Length);
            var groups = source.Sample(examples[from..to], (cursor + from) * o.SamplesPerPrompt);
            for (int g = 0; g < groups.Count; g++)
            {
                Score(groups[g], examples[from + g]);
            }

            if (parallel is not null)
            {
                groups = ExchangeGroups(groups);
            }

            GenerationStats sampling = Generator.Stats;
            peakKv = Math.Max(peakKv, sampling.PeakKvBytes);
            decodeSteps += sampling.DecodeSteps;
            lengthPredictions.AddRange(sampling.LengthPredictions);
            var guideGroups = guidance?.Sample(examples, cursor * o.SamplesPerPrompt, step);
            batches++;
            for (int g = 0; g < groups.Count; g++)
            {
                List<RolloutSequence> group = groups[g];
                generated++;
                foreach (RolloutSequence s in group)
                {
                    tokensGenerated += s.Response.Length;
                    rewardSum += s.Reward;
                    lengthSum += s.Response.Length;
                    correct += s.Correct ? 1 : 0;
                    responses++;
                }

                bool keptByFilter = !o.DynamicSampling || !Advantages.AllEqual(group.Select(s => s.Reward).ToArray());
                if (guidance is null)
                {
                    if (keptByFilter && kept.Count < o.PromptsPerStep)
                    {
                        group.ForEach(s => s.Group = kept.Count);
                        kept.Add(group);
                    }

                    continue;
                }

                List<RolloutSequence>? guideGroup = guideGroups?[g];
                if (guideGroup is not null)
                {
                    Score(guideGroup, examples[g]);
                    guideTokensGenerated += guideGroup.Sum(s => (long)s.Response.Length);
                }

                var (outcome, sequences) = guidance.Decide(group, guideGroup, step, keptByFilter);
                if (outcome == GroupOutcome.Kept && kept.Count < o.PromptsPerStep)
                {
                    sequences!.ForEach(s => s.Group = kept.Count);
                    kept.Add(sequences);
                }
                else if (outcome == GroupOutcome.Reused && reused.Count < o.PromptsPerStep)
                {
                    reused.Add(sequences!);
                }
                else if (outcome != GroupOutcome.Kept)
                {
                    dropped++;
                }
            }
        }

        if (guidance is not null)
        {
            // The zero-reward batch: its own token normaliser, weighted by lambda_zero; off-policy tokens by the guidance schedule.
            foreach (var group in reused)
            {
                int index = kept.Count + reused.IndexOf(group);
                group.ForEach(s => (s.Group, s.Normaliser, s.LossScale) = (index, 1, guidance.Options.LambdaZero));
            }

            float offPolicyWeight = guidance.Options.WeightAt(step);
            foreach (RolloutSequence s in kept.Concat(reused).SelectMany(g => g).Where(s => s.Source == RolloutSource.Guide))
            {
                s.LossScale *= offPolicyWeight;
            }

            kept.AddRange(reused);
        }

        double samplingSeconds = Stopwatch.GetElapsedTime(samplingStart).TotalSeconds;
        long trainStart = Stopwatch.GetTimestamp();
        var totals = terms.Select(_ => (double[]?)null).ToArray();
        var methodMetrics = new Dictionary<string, object>();
        double gradNorm = 0, lr = 0;
        long tokensTrained = 0;
        string? skipped = null;
        if (kept.Count > 0)
        {
            batch.Reset(kept.SelectMany(g => g).Where(s => !remote.Contains(s)));
            reference?.Score(batch, RolloutColumn.RefLogp, o.MicroBatchSequences);
            teacher?.Score(batch, RolloutColumn.TeacherLogp, o.MicroBatchSequences);
            if (o.KlInReward && reference is not null)
            {
                SubtractKlFromRewards();
            }

            foreach (var group in kept)
            {
                double[] rewards = group.Select(s => s.Reward).ToArray();
                var adv = new double[rewards.Length];
                advantages.Compute(rewards, adv);
                for (int i = 0; i < group.Count; i++)
                {
                    group[i].Advantage = adv[i];
                }
            }

            batch.UploadPerSequence(RolloutColumn.Advantage, s => (float)s.Advantage);
            foreach (LossTerm term in terms)
            {
                term.BeginStep(batch, step);
            }

            (gradNorm, lr, tokensTrained) = Train(step, kept, totals, out skipped);
            for (int k = 0; k < terms.Count; k++)
            {
                terms[k].Report(totals[k]!, methodMetrics);
            }
        }

        double correlation = Util.Statistics.Pearson(lengthPredictions.Select(p => p.Predicted).ToArray(),
            lengthPredictions.Select(p => (double)p.Actual).ToArray());
        if (!double.IsNaN(correlation))
        {
            methodMetrics["length_prediction_correlation"] = correlation;
        }

        if (guidance is not null)
        {
            double onTokens = 0, offTokens = 0;
            foreach (RolloutSequence s in kept.SelectMany(g => g))
            {
                double counted = s.Mask.Sum(m => (double)m);
                (s.Source == RolloutSource.Guide ? ref offTokens : ref onTokens) += counted;
            }

            methodMetrics["offpolicy_token_share"] = onTokens + offTokens > 0 ? offTokens / (onTokens + offTokens) : 0.0;
            methodMetrics["guide_samples"] = guidance.Options.SamplesAt(step);
            methodMetrics["guide_weight"] = (double)guidance.Options.WeightAt(step);
            methodMetrics["groups_reused"] = reused.Count;
            methodMetrics["groups_dropped"] = dropped;
            methodMetrics["guide_tokens_generated"] = guideTokensGenerated;
        }

        double trainingSeconds = Stopwatch.GetElapsedTime(trainStart).TotalSeconds;
        StepsDone = step + 1;
        double[] surrogate = totals[0] ?? new double[PolicyLossStats.Count];
        double tokens = Math.Max(surrogate[PolicyLossStats.Tokens], 1e-12);
        double loss = 0;
        for (int k = 0; k < terms.Count; k++)
        {
            loss += totals[k] is double[] t ? terms[k].Loss(t) : 0;
        }

        double[]? refKl = terms.FindIndex(t => t is ReferenceKlTerm) is int r and >= 0 ? totals[r] : null;
        double[]? entropy = totals[terms.FindIndex(t => t is EntropyBonusTerm)];
        Evaluation? test = o.EvalEvery > 0 && StepsDone % o.EvalEvery == 0 ? Evaluate() : null;
        AllReduceTotals? allReduce = parallel?.Totals - allReduceBefore; // null in one process
        return EngineTelemetry.Publish(new RlStepMetrics
        {
            Step = StepsDone,
            RewardMean = rewardSum / Math.Max(responses, 1),
            Accuracy = (double)correct / Math.Max(responses, 1),
            ResponseLength = lengthSum / Math.Max(responses, 1),
            Entropy = (entropy?[EntropyStats.Entropy] ?? 0) / tokens,
            ClipFractionHigh = surrogate[PolicyLossStats.ClipHigh] / tokens,
            ClipFractionLow = surrogate[PolicyLossStats.ClipLow] / tokens,
            RatioMean = surrogate[PolicyLossStats.Ratio] / tokens,
            ApproxKl = surrogate[PolicyLossStats.ApproxKl] / tokens,
            RefKl = (refKl?[KlLossStats.Estimate] ?? 0) / tokens,
            Loss = loss / Math.Max(1, o.Epochs * o.MiniBatches),
            GradNorm = gradNorm,
            LearningRate = lr,
            GroupsKept = kept.Count - reused.Count,
            GroupsGenerated = generated,
            GenerationBatches = batches,
            TokensGenerated = tokensGenerated,
            PeakKvBytes = peakKv,
            DecodeSteps = decodeSteps,
            TokensTrained = tokensTrained,
            SamplingSeconds = samplingSeconds,
            TrainingSeconds = trainingSeconds,
            TokensPerSecond = (tokensGenerated + guideTokensGenerated + tokensTrained) / Math.Max(samplingSeconds + trainingSeconds, 1e-9),
            TestAccuracy = test?.Accuracy,
            TestGreedyAccuracy = test?.GreedyAccuracy,
            Skipped = skipped,
            MethodMetrics = methodMetrics.Count > 0 ? methodMetrics : null,
            AllReduceBytes = allReduce?.Bytes,
            AllReduceSeconds = allReduce?.Seconds,
            AllReduceWaitSeconds = allReduce?.WaitSeconds,
        });
    }

    public void Dispose()
    {
        foreach (LossTerm term in terms)
        {
            term.Dispose();
        }

        update.Dispose();
        batch.Dispose();
        Optimizer.Dispose();
        reference?.Dispose();
        if (ownsTeacher)
        {
            teacher?.Dispose();
        }

        guidance?.Dispose();

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

    /// <summary>Task reward plus shaping of one group's responses.</summary>
    private void Score(List<RolloutSequence> group, TaskExample example)
    {
        using Activity? activity = EngineTelemetry.Source.StartActivity("engine.rl.scoring");
        RlOptions o = Options;
        string[] responses = group.Select(s => codec.Decode(s.Response)).ToArray();
        // A dataset's reward (your code, maybe slow) scores the group's responses in parallel.
        RewardResult[] verdicts = task is DatasetTask dataset ? dataset.ScoreAll(example, responses) : responses.Select(r => task.Score(example, r)).ToArray();
        for (int i = 0; i < group.Count; i++)
        {
            RolloutSequence s = group[i];
            RewardResult verdict = verdicts[i];
            double reward = verdict.Reward;
            if (o.SoftOverlongPunishment)
            {
                reward += o.OverlongPenaltyFactor * Advantages.SoftOverlongPenalty(s.Response.Length, o.MaxNewTokens, o.OverlongBuffer);
            }

            s.Reward = reward;
            s.Correct = verdict.Correct;
        }
    }

    /// <summary>The KL-in-reward variant: each response's reward loses <c>beta * sum_t M_t k_t</c> (pi_old against the reference).</summary>
    private void SubtractKlFromRewards()
    {
        Accelerator acc = policy.Acc;
        if (batch.Tokens > 0)
        {
            acc.KlPenalty(batch.Column(RolloutColumn.Scratch), batch.Column(RolloutColumn.OldLogp), batch.Column(RolloutColumn.RefLogp),
                Options.Estimator, batch.Tokens);
        }

        float[] kl = batch.Download(RolloutColumn.Scratch);
        for (int i = 0; i < batch.Sequences.Count; i++)
        {
            RolloutSequence s = batch.Sequences[i];
            double sum = 0;
            for (int j = 0; j < s.Response.Length; j++)
            {
                sum += s.Mask[j] * (double)kl[batch.Offset(i) + j];
            }

            s.Reward -= Options.KlCoef * sum;
        }
    }

    /// <summary>PPO epochs over mini-batches; returns the last grad norm and learning rate and the tokens trained.</summary>
    private (double GradNorm, double LearningRate, long Tokens) Train(int step, List<List<RolloutSequence>> kept, double[]?[] totals, out string? skipped)
    {
        using Activity? activity = EngineTelemetry.Source.StartActivity("engine.rl.update");
        skipped = null;
        RlOptions o = Options;
        int normLength = o.LossNormLength > 0 ? o.LossNormLength : o.MaxNewTokens;
        double gradNorm = 0, lr = 0;
        long tokens = 0;
        // Every rank's kept sequences in the one-process order; the batch holds this rank's (all of them in one process).
        IReadOnlyList<RolloutSequence> sequences = kept.SelectMany(g => g).ToList();
        int[] local = new int[sequences.Count];
        for (int i = 0, next = 0; i < sequences.Count; i++)
        {
            local[i] = remote.Contains(sequences[i]) ? -1 : next++;
        }

        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            int[] order = Shuffle(sequences.Count, step, epoch);
            for (int mb = 0; mb < o.MiniBatches; mb++)
            {
                int from = (int)((long)mb * order.Length / o.MiniBatches), to = (int)((long)(mb + 1) * order.Length / o.MiniBatches);
                int[] miniBatch = order[from..to];
                UploadWeights(miniBatch, sequences, local, normLength);
                int[] localMiniBatch = miniBatch.Select(i => local[i]).Where(i => i >= 0).ToArray();

                foreach (LossTerm term in terms)
                {
                    term.BeginMiniBatch(batch, localMiniBatch);
                }

                policy.ZeroGradients();
                update.Accumulate(batch, localMiniBatch, terms, o.MicroBatchSequences);
                parallel?.AllReduceGradients(policy); // the weights are normalised over the whole mini-batch: a plain sum
                double loss = 0;
                for (int k = 0; k < terms.Count; k++)
                {
                    double[] stats = terms[k].TakeStats();
                    stats = parallel?.Sum(stats) ?? stats;
                    loss += terms[k].Loss(stats);
                    totals[k] ??= new double[stats.Length];
                    for (int i = 0; i < stats.Length; i++)
                    {
                        totals[k]![i] += stats[i];
                    }
                }

                lr = LearningRateAt(Optimizer.StepCount);
                // A NaN or Inf in the loss or the gradients skips the update (reported); too many in a row stop the run.
                if (!Optimizer.Step((float)lr, (float)loss))
                {
                    skipped = Optimizer.LastSkipReason;
                }

                gradNorm = Optimizer.LastGradNorm();
                tokens += miniBatch.Sum(i => (long)sequences[i].Length);
            }
        }

        return (gradNorm, lr, tokens);
    }

    /// <summary>
    /// The aggregation weights of a mini-batch: per token normaliser (the main batch, mixed-policy DAPO's zero-reward batch) the
    /// aggregation mode over that part's sequences, times each sequence's loss scale; on-policy tokens into
    /// <see cref="RolloutColumn.Weight"/>, off-policy ones into <see cref="RolloutColumn.OffPolicyWeight"/>.
    /// </summary>
    private void UploadWeights(int[] miniBatch, IReadOnlyList<RolloutSequence> sequences, int[] local, int normLength)
    {
        foreach (var part in miniBatch.GroupBy(i => sequences[i].Normaliser))
        {
            int[] members = part.ToArray();
            float[][] weights = LossWeights.Compute(members.Select(i => sequences[i].Mask).ToList(), Options.Aggregation, normLength);
            for (int k = 0; k < members.Length; k++)
            {
                RolloutSequence s = sequences[members[k]];
                if (local[members[k]] < 0)
                {
                    continue; // another rank's sequence: only its mask counted in the normaliser
                }

                float[] w = weights[k];
                if (s.LossScale != 1f)
                {
                    w = w.Select(x => x * s.LossScale).ToArray();
                }

                batch.Upload(s.Source == RolloutSource.Policy ? RolloutColumn.Weight : RolloutColumn.OffPolicyWeight, local[members[k]], w);
            }
        }
    }

    /// <summary>
    /// Every rank's scored groups of one generation batch, in prompt order (the one-process order): this rank's
    /// own, and stand-ins for the other ranks' that carry what the keep decisions, the metrics and the loss
    /// weights read (reward, correctness, lengths, mask); the stand-ins are remembered in <see cref="remote"/>.
    /// </summary>
    private List<List<RolloutSequence>> ExchangeGroups(IReadOnlyList<List<RolloutSequence>> own)
    {
        var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(own.Count);
            foreach (List<RolloutSequence> group in own)
            {
                writer.Write(group.Count);
                foreach (RolloutSequence s in group)
                {
                    writer.Write(s.Reward);
                    writer.Write(s.Correct);
                    writer.Write(s.Truncated);
                    writer.Write(s.Prompt.Length);
                    writer.Write(s.Response.Length);
                    foreach (float m in s.Mask)
                    {
                        writer.Write(m);
                    }
                }
            }
        }

        byte[][] all = parallel!.AllGather(buffer.ToArray());
        var groups = new List<List<RolloutSequence>>();
        for (int rank = 0; rank < all.Length; rank++)
        {
            if (rank == parallel.Rank)
            {
                groups.AddRange(own);
                continue;
            }

            using var reader = new BinaryReader(new MemoryStream(all[rank]));
            int count = reader.ReadInt32();
            for (int g = 0; g < count; g++)
            {
                var group = new List<RolloutSequence>();
                int size = reader.ReadInt32();
                for (int i = 0; i < size; i++)
                {
                    double reward = reader.ReadDouble();
                    bool correct = reader.ReadBoolean(), truncated = reader.ReadBoolean();
                    int promptLength = reader.ReadInt32(), responseLength = reader.ReadInt32();
                    var mask = new float[responseLength];
                    for (int j = 0; j < responseLength; j++)
                    {
                        mask[j] = reader.ReadSingle();
                    }

                    var standIn = new RolloutSequence
                    {
                        Prompt = new int[promptLength], Response = new int[responseLength], BehaviourLogProbs = new float[responseLength], Mask = mask,
                        Truncated = truncated, Reward = reward, Correct = correct,
                    };
                    remote.Add(standIn);
                    group.Add(standIn);
                }

                groups.Add(group);
            }
        }

        return groups;
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
