using Engine.Core;

namespace Engine;

/// <summary>How responses are sampled.</summary>
public sealed record SamplingOptions
{
    /// <summary>Most tokens generated per response (at least 1).</summary>
    public int MaxNewTokens { get; init; } = 64;

    /// <summary>Softmax temperature; 0 means greedy (argmax).</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Keep only the k most likely tokens; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the most likely tokens up to this probability mass, in (0, 1]; 1 keeps all.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Seed of the counter-based generator; a sample depends only on (seed, sequence id, position).</summary>
    public ulong Seed { get; init; }

    /// <summary>End-of-sequence ids that stop a response (included in it); null uses the model's.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }

    /// <summary>Token sequences that stop a response when it ends with one of them (included in it).</summary>
    public IReadOnlyList<IReadOnlyList<int>> StopSequences { get; init; } = [];

    /// <summary>Throws an <see cref="EngineException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 1)
        {
            throw new EngineException($"max new tokens must be at least 1, got {MaxNewTokens}");
        }

        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
        {
            throw new EngineException($"temperature must be a finite number >= 0, got {Temperature}");
        }

        if (TopK < 0)
        {
            throw new EngineException($"top-k must be >= 0 (0 = off), got {TopK}");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new EngineException($"top-p must be in (0, 1], got {TopP}");
        }

        if (StopSequences.Any(s => s.Count == 0))
        {
            throw new EngineException("stop sequences must not be empty");
        }
    }
}

/// <summary>Why a response ended.</summary>
public enum FinishReason
{
    /// <summary>It produced an end-of-sequence token.</summary>
    EndOfSequence,

    /// <summary>It ended with one of the stop sequences.</summary>
    StopSequence,

    /// <summary>It reached the maximum number of new tokens or the model's context.</summary>
    Length,
}

/// <summary>One sampled response.</summary>
public sealed class GeneratedSequence
{
    internal GeneratedSequence(int promptIndex, int sampleIndex, long sequenceId, int[] tokenIds, float[] sampleLogProbs,
        float[] policyLogProbs, FinishReason finishReason)
    {
        PromptIndex = promptIndex;
        SampleIndex = sampleIndex;
        SequenceId = sequenceId;
        TokenIds = tokenIds;
        SampleLogProbs = sampleLogProbs;
        PolicyLogProbs = policyLogProbs;
        FinishReason = finishReason;
    }

    /// <summary>Index of the prompt in the request.</summary>
    public int PromptIndex { get; }

    /// <summary>Index of this response among the prompt's G responses.</summary>
    public int SampleIndex { get; }

    /// <summary>The id keying this response's random numbers.</summary>
    public long SequenceId { get; }

    /// <summary>Generated token ids (stop/EOS tokens included).</summary>
    public IReadOnlyList<int> TokenIds { get; }

    /// <summary>Per token: log-probability under the distribution actually sampled (temperature, top-k, top-p applied).</summary>
    public IReadOnlyList<float> SampleLogProbs { get; }

    /// <summary>Per token: log-probability under the policy at temperature 1 (what the training forward recomputes).</summary>
    public IReadOnlyList<float> PolicyLogProbs { get; }

    /// <summary>Why the response ended.</summary>
    public FinishReason FinishReason { get; }

    /// <summary>Decoded text, when a tokenizer was available.</summary>
    public string? Text { get; internal set; }
}

/// <summary>The G responses to one prompt.</summary>
public sealed class GenerationGroup
{
    internal GenerationGroup(int promptIndex, int[] promptTokenIds, IReadOnlyList<GeneratedSequence> samples)
    {
        PromptIndex = promptIndex;
        PromptTokenIds = promptTokenIds;
        Samples = samples;
    }

    /// <summary>Index of the prompt in the request.</summary>
    public int PromptIndex { get; }

    /// <summary>The prompt's token ids.</summary>
    public IReadOnlyList<int> PromptTokenIds { get; }

    /// <summary>The responses, by sample index.</summary>
    public IReadOnlyList<GeneratedSequence> Samples { get; }
}
