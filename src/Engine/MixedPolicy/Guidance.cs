using Engine.Generation;
using Engine.Rl;
using Engine.Training;

namespace Engine.MixedPolicy;

/// <summary>What mixed-policy DAPO made of one prompt's groups.</summary>
internal enum GroupOutcome
{
    /// <summary>Kept in the main batch (the policy's rewards are mixed), with the guide's first M_t samples.</summary>
    Kept,

    /// <summary>Dropped by DAPO's filter and not reused (all correct, or the guide failed too).</summary>
    Dropped,

    /// <summary>No on-policy response accepted; reused in the zero-reward batch with the guide's samples as the contrast.</summary>
    Reused,
}

/// <summary>
/// The guiding policy of mixed-policy DAPO: a frozen model with a generator of its own that samples M
/// responses per prompt (recording its log-probs as the behaviour log-probs), and the rule that decides
/// where each prompt's groups go.
/// </summary>
internal sealed class Guidance : IDisposable
{
    /// <summary>Salt of the guide's sampling seed, so its draws are not the policy's.</summary>
    private const ulong GuideSeedSalt = 0x6D1DE_5EEDUL;

    private readonly FrozenModel guide;
    private readonly bool ownsGuide;
    private readonly Generator generator;
    private readonly TaskCodec codec;
    private readonly RlOptions options;

    public Guidance(FrozenModel guide, bool ownsGuide, TaskCodec codec, RlOptions options)
    {
        this.guide = guide;
        this.ownsGuide = ownsGuide;
        this.codec = codec;
        this.options = options;
        Options = options.Guidance!;
        generator = new Generator(guide.Model, new GeneratorOptions
        {
            MaxSlots = options.MaxConcurrentSequences, KvBudgetBytes = (long)options.KvCacheMb << 20, Sampler = options.SamplerMode,
        });
    }

    public GuideOptions Options { get; }

    /// <summary>The guide's responses per prompt this step: M_t in the main batch, and all M when zero-reward groups may be reused.</summary>
    public int SamplesAt(int step) => Options.ReuseZeroReward ? Math.Max(Options.Samples, Options.SamplesAt(step)) : Options.SamplesAt(step);

    /// <summary>The guide's responses to each example (none when this step needs none).</summary>
    public IReadOnlyList<List<RolloutSequence>>? Sample(IReadOnlyList<TaskExample> examples, long sequenceIdBase, int step)
    {
        int m = SamplesAt(step);
        if (m == 0)
        {
            return null;
        }

        var sampler = new PolicySampler(generator, codec, options with { Seed = options.Seed ^ GuideSeedSalt }, RolloutSource.Guide, m);
        return sampler.Sample(examples, sequenceIdBase);
    }

    /// <summary>
    /// Where one prompt goes. <paramref name="policy"/> holds the G on-policy responses (scored), <paramref name="guideGroup"/> the
    /// guide's (scored; null when none were drawn). A group DAPO's filter keeps goes to the main batch with the guide's first M_t
    /// responses; a group with no accepted on-policy response goes to the zero-reward batch when reuse is on and some guide response
    /// is accepted; anything else is dropped. Returns the sequences to train on (policy first) and the outcome.
    /// </summary>
    public (GroupOutcome Outcome, List<RolloutSequence>? Sequences) Decide(List<RolloutSequence> policy, List<RolloutSequence>? guideGroup, int step,
        bool keptByFilter)
    {
        int m = Options.SamplesAt(step);
        if (keptByFilter)
        {
            var sequences = new List<RolloutSequence>(policy);
            if (guideGroup is not null && m > 0)
            {
                sequences.AddRange(guideGroup.Take(m));
            }

            return (GroupOutcome.Kept, sequences);
        }

        if (Options.ReuseZeroReward && guideGroup is not null && policy.All(s => !s.Correct) && guideGroup.Any(s => s.Correct))
        {
            return (GroupOutcome.Reused, [.. policy, .. guideGroup]);
        }

        return (GroupOutcome.Dropped, null);
    }

    public void Dispose()
    {
        generator.Dispose();
        if (ownsGuide)
        {
            guide.Dispose();
        }
    }
}
