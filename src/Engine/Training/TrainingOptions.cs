using Engine.Core;

namespace Engine;

/// <summary>
/// Supervised fine-tuning: next-token cross-entropy on (prompt, reference) pairs with the prompt
/// tokens masked out, to warm-start a policy or train a teacher.
/// </summary>
public sealed record SftOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 500;

    /// <summary>Examples per step.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>Linear warm-up steps.</summary>
    public int WarmupSteps { get; init; } = 20;

    /// <summary>Cosine decay to this fraction of the peak learning rate at the last step (1 = constant).</summary>
    public float MinLearningRateFraction { get; init; } = 0.1f;

    /// <summary>AdamW weight decay (matrices and embeddings only).</summary>
    public float WeightDecay { get; init; } = 0.01f;

    /// <summary>Global gradient-norm clip (0 disables).</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>AdamW beta1.</summary>
    public float Beta1 { get; init; } = 0.9f;

    /// <summary>AdamW beta2.</summary>
    public float Beta2 { get; init; } = 0.99f;

    /// <summary>
    /// Seed of the order of the training examples: a dataset's shuffle (reshuffled every epoch), the point of a built-in
    /// task's example stream the run starts from, each task's order in a mix. task.seed sets the task itself (a
    /// built-in generator, a dataset's train/eval split). An embedding application's own ITask keeps its own order.
    /// </summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Evaluate test accuracy every this many steps (0: only at the end).</summary>
    public int EvalEvery { get; init; }

    /// <summary>Test examples per evaluation.</summary>
    public int EvalExamples { get; init; } = 200;

    /// <summary>
    /// A step whose loss or gradients hold a NaN or Inf is skipped (weights and moments untouched);
    /// this many skips in a row stop the run with an error, before any checkpoint of this phase is written.
    /// </summary>
    public int MaxNonfiniteSkips { get; init; } = 3;

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(Steps, 1, "steps");
        OptionChecks.AtLeast(BatchSize, 1, "batch_size");
        OptionChecks.Positive(LearningRate, "learning_rate");
        OptionChecks.AtLeast(WarmupSteps, 0, "warmup_steps");
        OptionChecks.InRange(MinLearningRateFraction, 0, 1, "min_learning_rate_fraction");
        OptionChecks.AtLeastF(WeightDecay, 0, "weight_decay");
        OptionChecks.AtLeastF(MaxGradNorm, 0, "max_grad_norm");
        OptionChecks.InRange(Beta1, 0, 0.999999f, "beta1");
        OptionChecks.InRange(Beta2, 0, 0.999999f, "beta2");
        OptionChecks.AtLeast(EvalEvery, 0, "eval_every");
        OptionChecks.AtLeast(EvalExamples, 1, "eval_examples");
        OptionChecks.AtLeast(MaxNonfiniteSkips, 1, "max_nonfinite_skips");
    }
}

/// <summary>
/// Reinforcement learning with group-relative advantages (GRPO / DAPO; rl-core.md). Every DAPO
/// technique is a switch of its own so the paper's ablation ladder can be run: see
/// <see cref="Grpo"/>, <see cref="Dapo"/> and <see cref="Ladder"/>.
/// </summary>
public sealed record RlOptions
{
    /// <summary>Name of the preset these settings started from (informational).</summary>
    public string Algorithm { get; init; } = "dapo";

    /// <summary>RL steps (each: rollout, reward, filter, advantages, PPO epochs).</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Prompt groups per training batch (N).</summary>
    public int PromptsPerStep { get; init; } = 16;

    /// <summary>Responses sampled per prompt (G).</summary>
    public int SamplesPerPrompt { get; init; } = 8;

    /// <summary>Longest response (L_max) in tokens.</summary>
    public int MaxNewTokens { get; init; } = 16;

    /// <summary>Sampling temperature during rollouts.</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Nucleus sampling mass during rollouts, in (0, 1].</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Top-k during rollouts (0 = off).</summary>
    public int TopK { get; init; }

    /// <summary>PPO epochs (mu) over each batch with the old log-probs fixed.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Mini-batches per epoch (one optimizer step each).</summary>
    public int MiniBatches { get; init; } = 1;

    /// <summary>Sequences per forward/backward (memory only; results do not depend on it).</summary>
    public int MicroBatchSequences { get; init; } = 64;

    /// <summary>AdamW learning rate after warm-up.</summary>
    public float LearningRate { get; init; } = 1e-6f;

    /// <summary>Linear warm-up in optimizer steps.</summary>
    public int WarmupSteps { get; init; } = 20;

    /// <summary>AdamW weight decay.</summary>
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>Global gradient-norm clip (0 disables).</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>Stop the run after this many optimizer steps in a row were skipped for a NaN or Inf in the loss or gradients.</summary>
    public int MaxNonfiniteSkips { get; init; } = 3;

    /// <summary>AdamW beta1.</summary>
    public float Beta1 { get; init; } = 0.9f;

    /// <summary>AdamW beta2.</summary>
    public float Beta2 { get; init; } = 0.999f;

    /// <summary>Lower clip range: ratios below 1 - eps_low are clipped for negative advantages.</summary>
    public float EpsLow { get; init; } = 0.2f;

    /// <summary>Upper clip range (clip-higher): ratios above 1 + eps_high are clipped for positive advantages.</summary>
    public float EpsHigh { get; init; } = 0.28f;

    /// <summary>Dual-clip constant c (verl clip_ratio_c, e.g. 3); 0 disables.</summary>
    public float DualClip { get; init; }

    /// <summary>token-mean (DAPO), seq-mean-token-mean (GRPO) or seq-mean-token-sum-norm (Dr. GRPO).</summary>
    public LossAggregation LossAggregation { get; init; } = LossAggregation.TokenMean;

    /// <summary>L_norm of seq-mean-token-sum-norm; 0 means max_new_tokens.</summary>
    public int LossNormLength { get; init; }

    /// <summary>Divide advantages by the group's standard deviation (GRPO); false is Dr. GRPO.</summary>
    public bool NormalizeAdvantageByStd { get; init; } = true;

    /// <summary>
    /// Advantage estimator: group (GRPO's group-relative advantage, Dr. GRPO's without the std) or
    /// none (zero advantages: the reward does not enter the loss, e.g. KDRL's distillation-only arm).
    /// The same names in config files and flags.
    /// </summary>
    public AdvantageEstimator Advantage { get; init; } = AdvantageEstimator.Group;

    /// <summary>KDRL's distillation term to a frozen teacher (null: off). In config files, the section "kd".</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public KdOptions? Distillation { get; init; }

    /// <summary>Mixed-policy DAPO's guiding policy (null: off). In config files, the section "guide".</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public GuideOptions? Guidance { get; init; }

    /// <summary>Weight of the KL to the frozen reference (0: no reference model).</summary>
    public float KlCoef { get; init; }

    /// <summary>The KL reference's checkpoint directory (same tokenizer as the policy); empty: a copy of the policy when RL starts.</summary>
    public string Reference { get; init; } = "";

    /// <summary>KL estimator: k1, k2 or k3 (the same names in config files and flags).</summary>
    public KlEstimator KlEstimator { get; init; } = KlEstimator.K3;

    /// <summary>Subtract the KL from the reward (per sequence) instead of adding it to the loss.</summary>
    public bool KlInReward { get; init; }

    /// <summary>Weight of the entropy bonus (0 disables).</summary>
    public float EntropyCoef { get; init; }

    /// <summary>Drop groups whose rewards are all equal and refill from new prompts.</summary>
    public bool DynamicSampling { get; init; } = true;

    /// <summary>Most generation batches per step when refilling for dynamic sampling.</summary>
    public int MaxGenerationBatches { get; init; } = 3;

    /// <summary>Give responses cut at max_new_tokens a loss mask of 0.</summary>
    public bool OverlongFiltering { get; init; }

    /// <summary>Add DAPO's soft overlong punishment to the reward.</summary>
    public bool SoftOverlongPunishment { get; init; } = true;

    /// <summary>L_cache of the soft overlong punishment, in tokens.</summary>
    public int OverlongBuffer { get; init; } = 4;

    /// <summary>Factor of the soft overlong punishment.</summary>
    public float OverlongPenaltyFactor { get; init; } = 1f;

    /// <summary>
    /// Seed of sampling (rollouts, evaluation, mini-batch shuffles) and of the prompt order (as sft.seed orders SFT's
    /// examples; an embedding application's own ITask keeps its own order).
    /// </summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Evaluate test accuracy every this many steps (0: only at the end).</summary>
    public int EvalEvery { get; init; } = 10;

    /// <summary>Test examples per evaluation.</summary>
    public int EvalExamples { get; init; } = 200;

    /// <summary>Responses sampled per test prompt at the rollout temperature for avg@k (0: greedy accuracy only).</summary>
    public int EvalSamples { get; init; } = 8;

    /// <summary>Longest response of an evaluation, in tokens (0: <see cref="MaxNewTokens"/>).</summary>
    public int EvalMaxNewTokens { get; init; }

    /// <summary>Write a checkpoint every this many steps (0: only at the end).</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Responses decoded at once during rollouts.</summary>
    public int MaxConcurrentSequences { get; init; } = 128;

    /// <summary>KV-cache budget of the rollout engine, in MiB.</summary>
    public int KvCacheMb { get; init; } = 256;

    /// <summary>
    /// How rollouts share the decode slots: full, micro, continuous or infinite (Infinite Sampling: group size
    /// decoupled from the KV budget). The responses are the same whichever is chosen; memory and speed differ.
    /// The same names in config files and flags.
    /// </summary>
    public SamplerKind Sampler { get; init; } = SamplerKind.Continuous;

    /// <summary>The preset names <see cref="Preset"/> accepts.</summary>
    public const string PresetNames = "grpo, dapo, ladder-0 .. ladder-5, kdrl, kd or dapo-mixed";

    /// <summary>The preset of an algorithm name: grpo, dapo, ladder-0 .. ladder-5, kdrl, kd or dapo-mixed.</summary>
    /// <exception cref="EngineException">Another name.</exception>
    public static RlOptions Preset(string algorithm) => algorithm switch
    {
        "grpo" => Grpo(),
        "dapo" => Dapo(),
        "kdrl" => Kdrl(),
        "kd" => KdOnly(),
        "dapo-mixed" => DapoMixed(),
        string name when name.StartsWith("ladder-", StringComparison.Ordinal)
            && int.TryParse(name.AsSpan(7), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rung) => Ladder(rung),
        var other => throw new EngineException($"algorithm must be {PresetNames}, got '{other}'"),
    };

    /// <summary>
    /// The techniques of <paramref name="algorithm"/>'s preset with this run's budget and evaluation (steps, learning
    /// rate and warm-up, response length, prompts and samples per step, weight decay, mini-batches, evaluation).
    /// </summary>
    public RlOptions WithPresetOf(string algorithm) => Preset(algorithm) with
    {
        Steps = Steps, LearningRate = LearningRate, WarmupSteps = WarmupSteps, MaxNewTokens = MaxNewTokens, OverlongBuffer = OverlongBuffer,
        PromptsPerStep = PromptsPerStep, SamplesPerPrompt = SamplesPerPrompt, WeightDecay = WeightDecay, MiniBatches = MiniBatches,
        EvalEvery = EvalEvery, EvalExamples = EvalExamples, EvalSamples = EvalSamples, EvalMaxNewTokens = EvalMaxNewTokens, Seed = Seed,
        CheckpointEvery = CheckpointEvery, MaxConcurrentSequences = MaxConcurrentSequences, KvCacheMb = KvCacheMb, Sampler = Sampler,
    };

    /// <summary>Plain GRPO: sequence-level mean, symmetric clip 0.2, no DAPO technique.</summary>
    public static RlOptions Grpo() => Ladder(0);

    /// <summary>DAPO's defaults: clip-higher 0.2/0.28, token-level loss, dynamic sampling, soft overlong punishment, no KL.</summary>
    public static RlOptions Dapo() => Ladder(5);

    /// <summary>
    /// KDRL: GRPO (symmetric clip, no dynamic sampling, no KL to a reference) with the token-mean loss the
    /// paper's objective names, plus the distillation term to <paramref name="teacher"/> (a checkpoint directory, or empty
    /// when the teacher is given through the API).
    /// </summary>
    public static RlOptions Kdrl(string teacher = "") => Grpo() with
    {
        Algorithm = "kdrl", LossAggregation = LossAggregation.TokenMean, Distillation = new KdOptions { Teacher = teacher },
    };

    /// <summary>
    /// Mixed-policy DAPO: DAPO with a frozen guide's samples beside the policy's (<paramref name="guide"/>: a checkpoint
    /// directory, or empty when the guide is given through the API) and zero-reward groups reused.
    /// </summary>
    public static RlOptions DapoMixed(string guide = "") => Dapo() with { Algorithm = "dapo-mixed", Guidance = new GuideOptions { Guide = guide } };

    /// <summary>Distillation only (KDRL's "KD" arm): reverse KL to the teacher on the student's samples, the reward ignored.</summary>
    public static RlOptions KdOnly(string teacher = "") => Kdrl(teacher) with { Algorithm = "kd", Advantage = AdvantageEstimator.None };

    /// <summary>
    /// The DAPO paper's ablation ladder: 0 naive GRPO, 1 + overlong filtering, 2 + clip-higher,
    /// 3 + soft overlong punishment, 4 + token-level loss, 5 + dynamic sampling (= DAPO).
    /// </summary>
    public static RlOptions Ladder(int stage)
    {
        if (stage is < 0 or > 5)
        {
            throw new EngineException($"the ablation ladder has stages 0..5, got {stage}");
        }

        return new RlOptions
        {
            Algorithm = stage == 5 ? "dapo" : stage == 0 ? "grpo" : $"ladder-{stage}",
            OverlongFiltering = stage is >= 1 and < 3,
            EpsHigh = stage >= 2 ? 0.28f : 0.2f,
            SoftOverlongPunishment = stage >= 3,
            LossAggregation = stage >= 4 ? LossAggregation.TokenMean : LossAggregation.SeqMeanTokenMean,
            DynamicSampling = stage >= 5,
            MaxGenerationBatches = stage >= 5 ? 3 : 1,
        };
    }

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(Steps, 1, "steps");
        OptionChecks.AtLeast(PromptsPerStep, 1, "prompts_per_step");
        OptionChecks.AtLeast(SamplesPerPrompt, 1, "samples_per_prompt");
        OptionChecks.AtLeast(MaxNewTokens, 1, "max_new_tokens");
        OptionChecks.AtLeastF(Temperature, 0, "temperature");
        if (!(TopP > 0 && TopP <= 1))
        {
            throw new EngineException($"top_p must be in (0, 1], got {TopP}");
        }

        OptionChecks.AtLeast(TopK, 0, "top_k");
        OptionChecks.AtLeast(Epochs, 1, "epochs");
        OptionChecks.AtLeast(MiniBatches, 1, "mini_batches");
        OptionChecks.AtLeast(MaxNonfiniteSkips, 1, "max_nonfinite_skips");
        OptionChecks.AtLeast(MicroBatchSequences, 1, "micro_batch_sequences");
        OptionChecks.Positive(LearningRate, "learning_rate");
        OptionChecks.AtLeast(WarmupSteps, 0, "warmup_steps");
        OptionChecks.AtLeastF(WeightDecay, 0, "weight_decay");
        OptionChecks.AtLeastF(MaxGradNorm, 0, "max_grad_norm");
        OptionChecks.InRange(Beta1, 0, 0.999999f, "beta1");
        OptionChecks.InRange(Beta2, 0, 0.999999f, "beta2");
        OptionChecks.InRange(EpsLow, 0, 0.999999f, "eps_low");
        OptionChecks.AtLeastF(EpsHigh, 0, "eps_high");
        if (DualClip != 0 && !(DualClip > 1))
        {
            throw new EngineException($"dual_clip must be 0 (off) or greater than 1, got {DualClip}");
        }

        _ = Aggregation;
        _ = Estimator;
        _ = AdvantageMode;

        Distillation?.Validate();
        Guidance?.Validate();
        OptionChecks.AtLeast(LossNormLength, 0, "loss_norm_length");
        OptionChecks.AtLeastF(KlCoef, 0, "kl_coef");
        OptionChecks.AtLeastF(EntropyCoef, 0, "entropy_coef");
        OptionChecks.AtLeast(MaxGenerationBatches, 1, "max_generation_batches");
        OptionChecks.AtLeast(OverlongBuffer, 0, "overlong_buffer");
        if (OverlongBuffer >= MaxNewTokens && SoftOverlongPunishment)
        {
            throw new EngineException($"overlong_buffer ({OverlongBuffer}) must be smaller than max_new_tokens ({MaxNewTokens})");
        }

        OptionChecks.AtLeastF(OverlongPenaltyFactor, 0, "overlong_penalty_factor");
        OptionChecks.AtLeast(EvalEvery, 0, "eval_every");
        OptionChecks.AtLeast(EvalExamples, 1, "eval_examples");
        OptionChecks.AtLeast(EvalSamples, 0, "eval_samples");
        OptionChecks.AtLeast(EvalMaxNewTokens, 0, "eval_max_new_tokens");
        OptionChecks.AtLeast(CheckpointEvery, 0, "checkpoint_every");
        OptionChecks.AtLeast(MaxConcurrentSequences, 1, "max_concurrent_sequences");
        OptionChecks.AtLeast(KvCacheMb, 1, "kv_cache_mb");
        _ = SamplerMode;
        if (MiniBatches > PromptsPerStep * SamplesPerPrompt)
        {
            throw new EngineException($"mini_batches ({MiniBatches}) exceeds the sequences per step ({PromptsPerStep * SamplesPerPrompt})");
        }
    }

    internal LossAggregation Aggregation => Enum.IsDefined(LossAggregation) ? LossAggregation
        : throw new EngineException($"loss_aggregation must be token-mean, seq-mean-token-mean or seq-mean-token-sum-norm, got {(int)LossAggregation}");

    internal KlEstimator Estimator => Enum.IsDefined(KlEstimator) ? KlEstimator
        : throw new EngineException($"kl_estimator must be k1, k2 or k3, got {(int)KlEstimator}");

    internal AdvantageEstimator AdvantageMode => Enum.IsDefined(Advantage) ? Advantage
        : throw new EngineException($"advantage must be group or none, got {(int)Advantage}");

    internal SamplerKind SamplerMode => Enum.IsDefined(Sampler) ? Sampler
        : throw new EngineException($"sampler must be full, micro, continuous or infinite, got {(int)Sampler}");
}

/// <summary>Range checks shared by the option records.</summary>
internal static class OptionChecks
{

    public static void AtLeast(long value, long min, string name)
    {
        if (value < min)
        {
            throw new EngineException($"{name} must be at least {min}, got {value}");
        }
    }

    public static void AtLeastF(float value, float min, string name)
    {
        if (!(value >= min) || float.IsInfinity(value))
        {
            throw new EngineException($"{name} must be a finite number >= {min}, got {value}");
        }
    }

    public static void Positive(float value, string name)
    {
        if (!(value > 0) || float.IsInfinity(value))
        {
            throw new EngineException($"{name} must be a positive number, got {value}");
        }
    }

    public static void InRange(float value, float min, float max, string name)
    {
        if (!(value >= min && value <= max))
        {
            throw new EngineException($"{name} must be in [{min}, {max}], got {value}");
        }
    }
}

/// <summary>How per-token losses become one number (rl-core.md "Aggregation modes").</summary>
public enum LossAggregation
{
    /// <summary>DAPO: sum over tokens / tokens in the mini-batch.</summary>
    TokenMean,

    /// <summary>GRPO: mean over sequences of each sequence's token mean.</summary>
    SeqMeanTokenMean,

    /// <summary>Dr. GRPO: sum over tokens / (sequences * L_norm).</summary>
    SeqMeanTokenSumNorm,
}

/// <summary>How RL turns a group's rewards into advantages (<see cref="RlOptions.Advantage"/>).</summary>
public enum AdvantageEstimator
{
    /// <summary>
    /// Group-relative: the reward minus the group mean, divided by the group's standard deviation when
    /// <see cref="RlOptions.NormalizeAdvantageByStd"/> is set (GRPO) and not otherwise (Dr. GRPO).
    /// </summary>
    Group,

    /// <summary>Zero advantages: the reward does not enter the loss (KDRL's distillation-only arm).</summary>
    None,
}
