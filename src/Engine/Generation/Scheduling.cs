namespace Engine.Generation;

/// <summary>A response waiting for a slot.</summary>
/// <param name="PromptIndex">Prompt it answers.</param>
/// <param name="SampleIndex">Its index among the prompt's G responses.</param>
/// <param name="SequenceId">Id keying its random numbers.</param>
/// <param name="PromptLength">Tokens in its prompt.</param>
internal sealed record PendingSample(int PromptIndex, int SampleIndex, long SequenceId, int PromptLength);

/// <summary>
/// Decides which waiting response takes a free slot. The generator asks whenever a slot is free;
/// the policy sees what waits and what runs. Results never depend on the policy (randomness is
/// keyed per sequence), only speed and memory do.
/// </summary>
internal interface ISchedulingPolicy
{
    /// <summary>Index into <paramref name="pending"/> of the response to admit next.</summary>
    int Choose(IReadOnlyList<PendingSample> pending);

    /// <summary>Told about every token a running response produces (length predictors learn from this).</summary>
    void Observe(PendingSample sample, int generatedTokens, bool finished)
    {
    }
}

/// <summary>First come, first served: prompts in order, samples of a prompt in order.</summary>
internal sealed class FifoPolicy : ISchedulingPolicy
{
    public static FifoPolicy Instance { get; } = new();

    public int Choose(IReadOnlyList<PendingSample> pending) => 0;
}
