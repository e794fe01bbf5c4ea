namespace Engine;

/// <summary>
/// How the samples of a request share the decode slots (methods.md §3, Infinite Sampling). Every
/// sampler gives the same completions (randomness is keyed per sequence); they differ in peak KV
/// memory and in decode steps. Config files and flags spell them full, micro, continuous and infinite.
/// </summary>
public enum SamplerKind
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
