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

/// <summary>
/// How the samples of a request share the decode slots (methods.md §3, Infinite Sampling). Every
/// sampler gives the same completions (randomness is keyed per sequence); they differ in peak KV
/// memory and in decode steps.
/// </summary>
internal enum SamplerKind
{
    /// <summary>All G samples of a prompt decoded together: needs G slots and the KV of G worst-case samples.</summary>
    Full,

    /// <summary>
    /// Naive micro sampling groups: units of as many samples as the KV budget holds, each decoded to
    /// completion before the next starts; the prompt's KV is computed once and shared by every unit.
    /// </summary>
    Micro,

    /// <summary>Token-level refill: a finished sample's slot goes at once to the next waiting sample (of any prompt).</summary>
    Continuous,

    /// <summary>
    /// Continuous sampling with length-aware scheduling: every sample is first decoded for k tokens
    /// (a probe), its final length predicted, the waiting samples partitioned into per-slot lanes
    /// by predicted work (LPT), and each lane refilled shortest-predicted-first.
    /// </summary>
    Infinite,
}

/// <summary>Names of the samplers as options spell them.</summary>
internal static class Samplers
{
    /// <summary>The names, in the order of <see cref="SamplerKind"/>.</summary>
    public static readonly string[] Names = ["full", "micro", "continuous", "infinite"];

    /// <summary>The default: token-level refill (what the generator did before the samplers were named).</summary>
    public const string Default = "continuous";

    /// <summary>The sampler named <paramref name="name"/>; an <see cref="Core.EngineException"/> for an unknown name.</summary>
    public static SamplerKind Parse(string name)
    {
        int i = Array.IndexOf(Names, name);
        return i >= 0 ? (SamplerKind)i
            : throw new Core.EngineException($"unknown sampler '{name}': use one of {string.Join(", ", Names)}");
    }

    /// <summary>The option name of <paramref name="kind"/>.</summary>
    public static string Name(SamplerKind kind) => Names[(int)kind];
}
