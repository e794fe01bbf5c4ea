using Engine.Core;
using Engine.Model;

namespace Engine.Training;

/// <summary>AdamW settings (PyTorch semantics; decoupled weight decay on matrices and embeddings only).</summary>
internal sealed record AdamWOptions
{
    public float LearningRate { get; init; } = 1e-3f;

    public float Beta1 { get; init; } = 0.9f;

    public float Beta2 { get; init; } = 0.999f;

    public float Epsilon { get; init; } = 1e-8f;

    public float WeightDecay { get; init; } = 0.01f;

    /// <summary>Global gradient-norm clip; 0 disables.</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>
    /// Consecutive skipped (non-finite) steps after which <see cref="AdamWOptimizer.Step"/> throws;
    /// 0 never throws.
    /// </summary>
    public int MaxNonfiniteSkips { get; init; }
}

/// <summary>
/// AdamW over a model's flat parameter buffer: one squared-norm reduction and two update ops
/// (the decayed range and the rest) per step, all on the device.
/// </summary>
/// <remarks>
/// Non-finite guard: a NaN or Inf in any gradient makes the squared norm non-finite, and the
/// update op then leaves weights and moments untouched (decided on the device, so the bad step
/// never reaches the weights). The step reads the norm back to report the skip
/// (<see cref="LastSkipReason"/>) and does not count it in <see cref="StepCount"/> (as PyTorch's
/// GradScaler skips <c>optimizer.step()</c>). A non-finite loss, when the caller passes it, skips
/// the update too.
/// </remarks>
internal sealed class AdamWOptimizer : IDisposable
{
    private readonly Transformer model;
    private readonly DeviceBuffer normSquared;   // [1]
    private readonly float[] hostNorm = new float[1];
    private float lastNormSquared;

    public AdamWOptimizer(Transformer model, AdamWOptions options)
    {
        this.model = model;
        Options = options;
        model.EnsureGradients();
        M = model.Acc.Allocate(model.Layout.TotalLength);
        V = model.Acc.Allocate(model.Layout.TotalLength);
        normSquared = model.Acc.Allocate(1);
    }

    public AdamWOptions Options { get; set; }

    /// <summary>Steps taken so far.</summary>
    public int StepCount { get; set; }

    /// <summary>First moments, in the parameter layout.</summary>
    public DeviceBuffer M { get; }

    /// <summary>Second moments, in the parameter layout.</summary>
    public DeviceBuffer V { get; }

    /// <summary>Why the last step was skipped (a non-finite loss or gradient), or null when it was applied.</summary>
    public string? LastSkipReason { get; private set; }

    /// <summary>Whether the last step was skipped (weights and moments untouched).</summary>
    public bool LastStepSkipped => LastSkipReason is not null;

    /// <summary>Steps skipped in a row up to the last one (0 after an applied step).</summary>
    public int ConsecutiveSkips { get; private set; }

    /// <summary>
    /// Applies one update from the accumulated gradients, at <paramref name="learningRate"/> (default:
    /// the options'), unless the gradients (or <paramref name="loss"/>, when given) are not finite:
    /// then the step is skipped, weights and moments untouched, and false is returned. Waits for the
    /// device (it reads the gradient norm back). Throws an <see cref="EngineException"/> when
    /// <see cref="AdamWOptions.MaxNonfiniteSkips"/> steps in a row were skipped.
    /// </summary>
    public bool Step(float? learningRate = null, float? loss = null)
    {
        Accelerator acc = model.Acc;
        long total = model.Layout.TotalLength, decay = model.Layout.DecayLength;
        acc.Zero(normSquared.All);
        acc.SumOfSquares(normSquared.All, model.Grads!.All, total);
        string? skip = loss is float l && !float.IsFinite(l) ? $"the loss is {l}" : null;
        if (skip is null)
        {
            var s = new AdamWSettings(learningRate ?? Options.LearningRate, Options.Beta1, Options.Beta2, Options.Epsilon,
                Options.WeightDecay, StepCount + 1, Options.MaxGradNorm);
            Update(0, decay, s);
            Update(decay, total - decay, s with { WeightDecay = 0 });
        }

        acc.Download(normSquared.All, hostNorm);
        lastNormSquared = hostNorm[0];
        if (skip is null && !float.IsFinite(lastNormSquared))
        {
            // The update op saw the same norm and left everything untouched.
            skip = float.IsNaN(lastNormSquared) ? "a gradient is NaN" : "a gradient is infinite or the squared gradient norm overflows float";
        }

        LastSkipReason = skip;
        if (skip is null)
        {
            StepCount++;
            ConsecutiveSkips = 0;
            return true;
        }

        ConsecutiveSkips++;
        if (Options.MaxNonfiniteSkips > 0 && ConsecutiveSkips >= Options.MaxNonfiniteSkips)
        {
            throw new EngineException(
                $"{ConsecutiveSkips} optimizer steps in a row skipped for non-finite values (max_nonfinite_skips = {Options.MaxNonfiniteSkips}), " +
                $"the last because {skip}; the weights are those after optimizer step {StepCount}: lower the learning rate or check the data");
        }

        return false;
    }

    /// <summary>The global gradient norm of the last step (before clipping; NaN or infinite when that step was skipped for it).</summary>
    public float LastGradNorm() => MathF.Sqrt(lastNormSquared);

    public void Dispose()
    {
        M.Dispose();
        V.Dispose();
        normSquared.Dispose();
    }

    private void Update(long offset, long length, in AdamWSettings s)
    {
        if (length <= 0)
        {
            return;
        }

        model.Acc.AdamW(model.Params.Slice(offset, length), model.Grads!.Slice(offset, length), M.Slice(offset, length),
            V.Slice(offset, length), normSquared.All, s, length);
    }
}
