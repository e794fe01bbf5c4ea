using Engine.Generation;
using Engine.Training;

namespace Engine.Rl;

/// <summary>
/// Where a group's responses come from. Each response records the policy that produced it and that
/// policy's per-token log-probs; rewards are the trainer's business.
/// </summary>
internal interface IRolloutSource
{
    /// <summary>
    /// Samples responses for each example; sequence ids start at <paramref name="sequenceIdBase"/> so the
    /// randomness is keyed by (seed, sequence, position) and a resumed run samples the same.
    /// </summary>
    /// <returns>One list of responses per example, in order.</returns>
    IReadOnlyList<List<RolloutSequence>> Sample(IReadOnlyList<TaskExample> examples, long sequenceIdBase);
}

/// <summary>The policy's own sampler: G responses per prompt through the generation engine (on-policy).</summary>
internal sealed class PolicySampler(Generator generator, TaskCodec codec, RlOptions options, RolloutSource source = RolloutSource.Policy,
    int? samplesPerPrompt = null) : IRolloutSource
{
    public IReadOnlyList<List<RolloutSequence>> Sample(IReadOnlyList<TaskExample> examples, long sequenceIdBase)
    {
        var groups = generator.Generate(examples.Select(codec.Prompt).ToArray(), samplesPerPrompt ?? options.SamplesPerPrompt,
            new SamplingOptions
            {
                MaxNewTokens = options.MaxNewTokens, Temperature = options.Temperature, TopP = options.TopP, TopK = options.TopK, Seed = options.Seed,
                EosTokenIds = [.. codec.StopIds],
            }, sequenceIdBase: sequenceIdBase);
        var result = new List<List<RolloutSequence>>(groups.Count);
        for (int g = 0; g < groups.Count; g++)
        {
            var group = new List<RolloutSequence>(groups[g].Samples.Count);
            foreach (GeneratedSequence s in groups[g].Samples)
            {
                bool truncated = s.FinishReason == FinishReason.Length;
                var mask = new float[s.TokenIds.Count];
                Array.Fill(mask, options.OverlongFiltering && truncated ? 0f : 1f);
                group.Add(new RolloutSequence
                {
                    Prompt = [.. groups[g].PromptTokenIds],
                    Response = [.. s.TokenIds],
                    BehaviourLogProbs = [.. s.PolicyLogProbs],
                    Mask = mask,
                    Source = source,
                    Truncated = truncated,
                });
            }

            result.Add(group);
        }

        return result;
    }
}
