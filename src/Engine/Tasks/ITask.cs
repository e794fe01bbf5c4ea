namespace Engine;

/// <summary>Which part of a task's problem space an example comes from; the splits never overlap.</summary>
public enum DataSplit
{
    /// <summary>Examples for training (SFT and RL prompts).</summary>
    Train,

    /// <summary>Held-out examples for evaluation.</summary>
    Test,
}

/// <summary>One problem: the prompt the policy sees and a reference response (for SFT and display).</summary>
/// <param name="Prompt">Text the model is conditioned on (for a chat, the last user message).</param>
/// <param name="Reference">A correct response (without end-of-sequence marker).</param>
public sealed record TaskExample(string Prompt, string Reference)
{
    private static readonly IReadOnlyDictionary<string, string> NoFields = new Dictionary<string, string>();

    /// <summary>
    /// The whole conversation the response continues (system and earlier turns included), when the
    /// example is a chat; null: the prompt is one user message.
    /// </summary>
    public IReadOnlyList<ChatTurn>? Messages { get; init; }

    /// <summary>Every field of the dataset row the example came from, as text (for rewards); empty for generated tasks.</summary>
    public IReadOnlyDictionary<string, string> Fields { get; init; } = NoFields;

    /// <summary>Where the example came from (e.g. "train.jsonl:12"), for error messages; empty for generated tasks.</summary>
    public string Source { get; init; } = "";
}

/// <summary>One turn of a chat.</summary>
/// <param name="Role">"system", "user" or "assistant".</param>
/// <param name="Content">The turn's text.</param>
public sealed record ChatTurn(string Role, string Content);

/// <summary>The verdict on one response.</summary>
/// <param name="Reward">Scalar reward (the task decides the scale; e.g. 1 correct, 0 wrong).</param>
/// <param name="Correct">Whether the verifier accepts the response (counts toward accuracy).</param>
public readonly record struct RewardResult(double Reward, bool Correct);

/// <summary>
/// Scores responses. Embedding applications implement this (or <see cref="ITask"/>) to train on
/// their own verifiable rewards. Implementations must be deterministic and thread-safe.
/// </summary>
public interface IRewardFunction
{
    /// <summary>Scores <paramref name="response"/> (decoded text, end-of-sequence marker removed) to <paramref name="example"/>.</summary>
    RewardResult Score(TaskExample example, string response);
}

/// <summary>
/// A task with verifiable rewards: a deterministic, seeded generator of examples with disjoint
/// train and test splits, and a checker.
/// </summary>
public interface ITask : IRewardFunction
{
    /// <summary>Short identifier, e.g. "addition".</summary>
    string Name { get; }

    /// <summary>Every character prompts and correct responses can contain (for a character tokenizer).</summary>
    string Alphabet { get; }

    /// <summary>Longest correct response in characters (a bound for max_new_tokens).</summary>
    int MaxResponseLength { get; }

    /// <summary>
    /// The example at <paramref name="index"/> of a split: the same (split, index) always gives the
    /// same example, and no problem appears in both splits.
    /// </summary>
    TaskExample Example(DataSplit split, long index);
}
