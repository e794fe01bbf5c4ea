namespace Engine;

/// <summary>What a dataset loader does with a row it cannot use (a missing field, a wrong type, a line that is not JSON).</summary>
public enum MalformedRowPolicy
{
    /// <summary>Stop with an error naming the file and the line (or row group and row).</summary>
    Fail,

    /// <summary>Leave the row out and count it (<see cref="DatasetTask.SkippedRows"/>).</summary>
    Skip,
}

/// <summary>
/// A dataset of prompts (and answers) read from JSON Lines (<c>.jsonl</c>) or Parquet (<c>.parquet</c>) files.
/// </summary>
/// <remarks>
/// Each row gives its prompt either as text (<see cref="PromptField"/>) or as a chat
/// (<see cref="MessagesField"/>: a list of objects with "role" and "content"). The answer is the
/// <see cref="AnswerField"/> (text or a number), or, for a chat, a final "assistant" message. Every
/// scalar field of a row is kept as text and handed to the reward (<see cref="TaskExample.Fields"/>).
/// The evaluation examples come from <see cref="EvalPath"/>, or are a seeded random
/// <see cref="EvalFraction"/> of the training file.
/// </remarks>
public sealed record DatasetOptions
{
    /// <summary>The training file (.jsonl or .parquet).</summary>
    public string TrainPath { get; init; } = "";

    /// <summary>A separate evaluation file; empty: hold out <see cref="EvalFraction"/> of the training file.</summary>
    public string EvalPath { get; init; } = "";

    /// <summary>The share of the training file held out for evaluation when there is no <see cref="EvalPath"/> (0 to below 1).</summary>
    public double EvalFraction { get; init; } = 0.1;

    /// <summary>The field holding the prompt text.</summary>
    public string PromptField { get; init; } = "prompt";

    /// <summary>The field holding the reference answer; empty: rows need no answer (a reward that does not compare with one).</summary>
    public string AnswerField { get; init; } = "answer";

    /// <summary>The field holding a chat (used when a row has no <see cref="PromptField"/>).</summary>
    public string MessagesField { get; init; } = "messages";

    /// <summary>What to do with a row that cannot be used.</summary>
    public MalformedRowPolicy OnMalformed { get; init; } = MalformedRowPolicy.Fail;

    /// <summary>
    /// Seed of the train/eval split (task.seed). The trainers shuffle the training examples with their own seed (sft.seed,
    /// rl.seed); this one orders them only for <see cref="DatasetTask.Example"/> called directly.
    /// </summary>
    public ulong Seed { get; init; }

    /// <summary>Draw training examples in a seeded random order, reshuffled each epoch (false: file order, whatever the seed).</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>The task's name in reports; empty: the training file's name without extension.</summary>
    public string Name { get; init; } = "";
}
