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
}

/// <summary>
/// AdamW over a model's flat parameter buffer: one squared-norm reduction and two update ops
/// (the decayed range and the rest) per step, all on the device.
/// </summary>
internal sealed class AdamWOptimizer : IDisposable
{
    private readonly Transformer model;
    private readonly DeviceBuffer normSquared;   // [1]
    private readonly float[] hostNorm = new float[1];

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

    /// <summary>Applies one update from the accumulated gradients, at <paramref name="learningRate"/> (default: the options').</summary>
    public void Step(float? learningRate = null)
    {
        Accelerator acc = model.Acc;
        StepCount++;
        long total = model.Layout.TotalLength, decay = model.Layout.DecayLength;
        acc.Zero(normSquared.All);
        acc.SumOfSquares(normSquared.All, model.Grads!.All, total);
        var s = new AdamWSettings(learningRate ?? Options.LearningRate, Options.Beta1, Options.Beta2, Options.Epsilon,
            Options.WeightDecay, StepCount, Options.MaxGradNorm);
        Update(0, decay, s);
        Update(decay, total - decay, s with { WeightDecay = 0 });
    }

    /// <summary>The global gradient norm of the last step (before clipping); waits for the device.</summary>
    public float LastGradNorm()
    {
        model.Acc.Download(normSquared.All, hostNorm);
        return MathF.Sqrt(hostNorm[0]);
    }

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
