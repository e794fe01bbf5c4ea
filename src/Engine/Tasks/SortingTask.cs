using Engine.Tasks;

namespace Engine;

/// <summary>
/// Sorting a string of decimal digits in ascending order. Prompt <c>"sort 3817="</c>, reference
/// <c>"1378"</c>.
/// </summary>
/// <remarks>
/// <para>The length is uniform in [<see cref="MinLength"/>, <see cref="MaxLength"/>]; each digit is
/// uniform in 0..9, independently (repeats allowed).</para>
/// <para>Checker: the response, with surrounding whitespace trimmed, must be exactly the prompt's
/// digits in ascending order; anything else is wrong. Reward 1 when correct, else 0. The verdict is
/// computed from the prompt alone.</para>
/// <para>Splits: the canonical problem is the multiset of digits (that is, the answer), so every
/// ordering of the same digits is in the same split and no test answer is ever a training answer.</para>
/// </remarks>
internal sealed class SortingTask : ITask, ISeededTrainingOrder
{
    /// <summary>The longest supported digit string.</summary>
    public const int MaxSupportedLength = 64;

    private const string TaskName = "sorting";
    private const string PromptPrefix = "sort ";

    /// <summary>Creates the task.</summary>
    /// <param name="minLength">Fewest digits to sort (1..<see cref="MaxSupportedLength"/>).</param>
    /// <param name="maxLength">Most digits to sort (<paramref name="minLength"/>..<see cref="MaxSupportedLength"/>).</param>
    /// <param name="seed">Seed of the example generator.</param>
    /// <exception cref="Core.EngineException">An option is out of range.</exception>
    public SortingTask(int minLength = 2, int maxLength = 6, ulong seed = 0)
    {
        TaskRandom.Require(minLength is >= 1 and <= MaxSupportedLength, TaskName,
            $"MinLength must be in 1..{MaxSupportedLength} (got {minLength})");
        TaskRandom.Require(maxLength >= minLength && maxLength <= MaxSupportedLength, TaskName,
            $"MaxLength must be in MinLength..{MaxSupportedLength} = {minLength}..{MaxSupportedLength} (got {maxLength})");
        MinLength = minLength;
        MaxLength = maxLength;
        Seed = seed;
    }

    /// <summary>Fewest digits to sort.</summary>
    public int MinLength { get; }

    /// <summary>Most digits to sort.</summary>
    public int MaxLength { get; }

    /// <summary>Seed of the example generator.</summary>
    public ulong Seed { get; }

    /// <inheritdoc/>
    public string Name => TaskName;

    /// <inheritdoc/>
    /// <remarks>Digits, '=', and the space and letters of "sort ". (The checker also tolerates surrounding whitespace.)</remarks>
    public string Alphabet => "0123456789= orst";

    /// <inheritdoc/>
    public int MaxResponseLength => MaxLength;

    /// <inheritdoc/>
    public TaskExample TrainExample(ulong orderSeed, long index) => TrainingOrder.FromStream(this, orderSeed, index);

    /// <inheritdoc/>
    public TaskExample Example(DataSplit split, long index)
    {
        var rng = TaskRandom.ForExample(Seed, TaskName, split, index);
        Span<char> digits = stackalloc char[MaxSupportedLength];
        Span<char> sorted = stackalloc char[MaxSupportedLength];
        for (int draw = 0; draw < TaskRandom.MaxDraws; draw++)
        {
            int length = (int)TaskRandom.Between(ref rng, MinLength, MaxLength);
            Span<char> d = digits[..length];
            for (int i = 0; i < length; i++)
            {
                d[i] = (char)('0' + TaskRandom.Below(ref rng, 10));
            }

            Span<char> s = sorted[..length];
            d.CopyTo(s);
            s.Sort();
            // Same as TaskRandom.SplitOf(CanonicalKey(sorted)), without building the string.
            if (TaskRandom.SplitOf(new KeyHash().Append("sorting:").Append(s)) == split)
            {
                return new TaskExample(string.Concat(PromptPrefix, d, "="), new string(s));
            }
        }

        throw TaskRandom.NoProblemFound(TaskName, split);
    }

    /// <inheritdoc/>
    public RewardResult Score(TaskExample example, string response)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(response);
        string sorted = SortedDigitsOf(example.Prompt) ?? throw TaskRandom.BadPrompt(TaskName, example.Prompt);
        bool correct = response.AsSpan().Trim().SequenceEqual(sorted);
        return correct ? new RewardResult(1, true) : new RewardResult(0, false);
    }

    /// <summary>The canonical problem of a prompt (what decides its split), or null when the prompt is malformed.</summary>
    internal static string? CanonicalKeyOf(string prompt) =>
        SortedDigitsOf(prompt) is { } sorted ? CanonicalKey(sorted) : null;

    private static string CanonicalKey(string sortedDigits) => "sorting:" + sortedDigits;

    /// <summary>The prompt's digits sorted ascending, or null when the prompt is malformed.</summary>
    private static string? SortedDigitsOf(string prompt)
    {
        ReadOnlySpan<char> p = prompt;
        if (!p.StartsWith(PromptPrefix, StringComparison.Ordinal) || p.Length < PromptPrefix.Length + 2 || p[^1] != '=')
        {
            return null;
        }

        ReadOnlySpan<char> body = p[PromptPrefix.Length..^1];
        if (body.Length > MaxSupportedLength || body.ContainsAnyExceptInRange('0', '9'))
        {
            return null;
        }

        Span<char> d = stackalloc char[body.Length];
        body.CopyTo(d);
        d.Sort();
        return new string(d);
    }
}
