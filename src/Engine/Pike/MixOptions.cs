using Engine.Core;

namespace Engine;

/// <summary>
/// Multi-task SFT (PiKE, arXiv:2502.06244; methods.md §4): every batch mixes K tasks, <c>b_k</c> examples of
/// task k summing to the batch size, and a mixer adapts the shares from per-task gradient statistics.
/// Config section "mix"; CLI <c>engine sft --task A --task B ... | --mix FILE --mixer pike</c>.
/// </summary>
public sealed record MixOptions
{
    /// <summary>
    /// The tasks, separated by ';': a built-in task as <c>name</c> or <c>name:key=value,key=value</c>
    /// (e.g. <c>addition:max_digits=1</c>), or a dataset file (.jsonl or .parquet).
    /// </summary>
    public string Tasks { get; init; } = "";

    /// <summary>uniform (static equal shares), pike or balanced-pike (the same names in config files and flags).</summary>
    public MixerKind Mixer { get; init; } = MixerKind.Pike;

    /// <summary>
    /// zeta1: the weight of the squared gradient norm in PiKE's exponent (raises a task's share). The statistics are in the
    /// loss's own units, so the best value depends on the model and data; the default comes from the sweep in src/Engine/Pike/README.md.
    /// </summary>
    public float Zeta1 { get; init; } = 0.005f;

    /// <summary>
    /// zeta2: the weight of the gradient variance <c>sigma_k^2 / (2b)</c> in PiKE's exponent (lowers a task's share); 0 by
    /// default because every value tried above 0 collapsed the mixture onto one task in the sweep (src/Engine/Pike/README.md).
    /// </summary>
    public float Zeta2 { get; init; }

    /// <summary>T0: update the shares every this many steps (the statistics are measured at those steps only).</summary>
    public int UpdateEvery { get; init; } = 10;

    /// <summary>tau of Balanced-PiKE's tilted objective: task weights <c>y = tau softmax(tau L)</c>.</summary>
    public float Tau { get; init; } = 3f;

    /// <summary>The fewest examples of each task in every batch (0 lets a task drop out of the batch).</summary>
    public int MinPerTask { get; init; } = 1;

    /// <summary>
    /// Examples per task for the statistics (split into two halves); 0: the task's own share of the batch (at least 2), so
    /// that an update costs one extra backward per task sub-batch. More examples give less noisy estimates at a higher cost.
    /// </summary>
    public int StatisticsExamples { get; init; }

    /// <summary>Throws an <see cref="EngineException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Mixer))
        {
            throw new EngineException($"mix: mixer must be uniform, pike or balanced-pike, got {(int)Mixer}");
        }

        OptionChecks.AtLeastF(Zeta1, 0, "mix: zeta1");
        OptionChecks.AtLeastF(Zeta2, 0, "mix: zeta2");
        OptionChecks.AtLeast(UpdateEvery, 1, "mix: update_every");
        OptionChecks.Positive(Tau, "mix: tau");
        OptionChecks.AtLeast(MinPerTask, 0, "mix: min_per_task");
        OptionChecks.AtLeast(StatisticsExamples, 0, "mix: statistics_examples");
        if (TaskSpecs.Count < 2)
        {
            throw new EngineException($"mix: tasks must name at least two tasks separated by ';', got '{Tasks}'");
        }
    }

    /// <summary>The task specs of <see cref="Tasks"/>.</summary>
    internal IReadOnlyList<string> TaskSpecs => Tasks.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

/// <summary>How multi-task SFT shares each batch among the tasks (<see cref="MixOptions.Mixer"/>).</summary>
public enum MixerKind
{
    /// <summary>Static shares: the initial weights (equal by default), never updated.</summary>
    Uniform,

    /// <summary>PiKE: every <see cref="MixOptions.UpdateEvery"/> steps the shares grow with each task's squared gradient norm (zeta1) and shrink with its gradient variance (zeta2).</summary>
    Pike,

    /// <summary>Balanced-PiKE: PiKE on the tilted objective with task weights <c>y = tau softmax(tau L)</c>, so tasks with a higher loss weigh more.</summary>
    BalancedPike,
}
