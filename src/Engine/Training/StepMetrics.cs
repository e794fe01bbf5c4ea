using System.Text.Json.Serialization;

namespace Engine;

/// <summary>What one SFT step did (one line of metrics.jsonl).</summary>
public sealed record SftStepMetrics
{
    /// <summary>Steps completed after this one.</summary>
    public int Step { get; init; }

    /// <summary>Mean loss of the step.</summary>
    public double Loss { get; init; }

    /// <summary>Global gradient norm before clipping (of the last optimizer step).</summary>
    public double GradNorm { get; init; }

    /// <summary>Learning rate used (of the last optimizer step).</summary>
    public double LearningRate { get; init; }

    /// <summary>Tokens processed per second (sampled and trained).</summary>
    public double TokensPerSecond { get; init; }

    /// <summary>Greedy test accuracy, when this step evaluated.</summary>
    public double? TestAccuracy { get; init; }

    /// <summary>Why the optimizer step was skipped (a NaN or Inf in the loss or gradients), or null when it was applied.</summary>
    public string? Skipped { get; init; }

    /// <summary>
    /// Metrics of the batch composition, by snake_case name (multi-task mixing: mix_weight_TASK, mix_batch_TASK,
    /// mix_grad_sq_TASK, mix_variance_TASK, mix_cosine_mean); null when the step has none. Written flat into metrics.jsonl.
    /// </summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public Dictionary<string, object>? MethodMetrics { get; init; }

    /// <summary>Bytes of gradient all-reduced over the ranks in this step (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? AllReduceBytes { get; init; }

    /// <summary>Seconds this rank spent in the gradient all-reduce in this step, once every rank had arrived (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? AllReduceSeconds { get; init; }

    /// <summary>Seconds this rank waited for the others to reach the all-reduce in this step (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? AllReduceWaitSeconds { get; init; }
}

/// <summary>What one RL step did (one line of metrics.jsonl).</summary>
public sealed record RlStepMetrics
{
    /// <summary>Steps completed after this one.</summary>
    public int Step { get; init; }

    /// <summary>Mean reward over every sampled response (shaping included).</summary>
    public double RewardMean { get; init; }

    /// <summary>Fraction of sampled responses the verifier accepted.</summary>
    public double Accuracy { get; init; }

    /// <summary>Mean response length in tokens.</summary>
    public double ResponseLength { get; init; }

    /// <summary>Mean policy entropy over the trained tokens.</summary>
    public double Entropy { get; init; }

    /// <summary>Fraction of trained tokens clipped above (A &gt; 0, r &gt; 1 + eps_high).</summary>
    public double ClipFractionHigh { get; init; }

    /// <summary>Fraction of trained tokens clipped below (A &lt; 0, r &lt; 1 - eps_low).</summary>
    public double ClipFractionLow { get; init; }

    /// <summary>Mean importance ratio over the trained tokens.</summary>
    public double RatioMean { get; init; }

    /// <summary>Mean of logp_old - logp_new over the trained tokens.</summary>
    public double ApproxKl { get; init; }

    /// <summary>Mean KL estimate to the reference policy (0 without one).</summary>
    public double RefKl { get; init; }

    /// <summary>Mean loss of the step.</summary>
    public double Loss { get; init; }

    /// <summary>Global gradient norm before clipping (of the last optimizer step).</summary>
    public double GradNorm { get; init; }

    /// <summary>Learning rate used (of the last optimizer step).</summary>
    public double LearningRate { get; init; }

    /// <summary>Prompt groups trained on (after dynamic sampling).</summary>
    public int GroupsKept { get; init; }

    /// <summary>Prompt groups sampled.</summary>
    public int GroupsGenerated { get; init; }

    /// <summary>Generation batches used to fill the step.</summary>
    public int GenerationBatches { get; init; }

    /// <summary>Response tokens sampled.</summary>
    public long TokensGenerated { get; init; }

    /// <summary>Most KV-cache bytes the policy's rollouts held at once during the step (the largest of its generation batches).</summary>
    public long PeakKvBytes { get; init; }

    /// <summary>Decode steps of the policy's rollouts (summed over the step's generation batches).</summary>
    public int DecodeSteps { get; init; }

    /// <summary>Tokens (prompt and response) through the training forward/backward.</summary>
    public long TokensTrained { get; init; }

    /// <summary>Wall time spent sampling.</summary>
    public double SamplingSeconds { get; init; }

    /// <summary>Wall time spent in the update.</summary>
    public double TrainingSeconds { get; init; }

    /// <summary>Tokens processed per second (sampled and trained).</summary>
    public double TokensPerSecond { get; init; }

    /// <summary>Test accuracy (avg@k at the rollout temperature, or greedy when k = 0), when this step evaluated.</summary>
    public double? TestAccuracy { get; init; }

    /// <summary>Greedy test accuracy, when this step evaluated.</summary>
    public double? TestGreedyAccuracy { get; init; }

    /// <summary>Why an optimizer step of this RL step was skipped (a NaN or Inf in the loss or gradients), or null when all were applied.</summary>
    public string? Skipped { get; init; }

    /// <summary>
    /// Metrics of the method's own loss terms, by snake_case name (KDRL: kd_loss, kd_token_reward,
    /// kd_masked_share, kd_beta); null when the step has none. Written flat into metrics.jsonl.
    /// </summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public Dictionary<string, object>? MethodMetrics { get; init; }

    /// <summary>Bytes of gradient all-reduced over the ranks in this step (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? AllReduceBytes { get; init; }

    /// <summary>Seconds this rank spent in the gradient all-reduce in this step, once every rank had arrived (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? AllReduceSeconds { get; init; }

    /// <summary>Seconds this rank waited for the others to reach the all-reduce in this step (data-parallel runs only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? AllReduceWaitSeconds { get; init; }
}
