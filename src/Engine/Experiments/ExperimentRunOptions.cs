namespace Engine.Experiments;

/// <summary>What every <c>engine experiment</c> run takes: the seeds, the output folder, the reduced CI version, the device.</summary>
internal abstract record ExperimentRunOptions
{
    /// <summary>One full repetition of every arm per seed.</summary>
    public required ulong[] Seeds { get; init; }

    /// <summary>Where summary.json and report.html go.</summary>
    public required string OutDir { get; init; }

    /// <summary>The reduced CI version: same arms, a few steps.</summary>
    public bool Quick { get; init; }

    /// <summary>Device spec (null: the default device).</summary>
    public string? Device { get; init; }

    /// <summary>RL steps per arm (null: the experiment's default for a full or quick run).</summary>
    public int? Steps { get; init; }
}
