using Engine.Tasks;

namespace Engine;

/// <summary>
/// Multi-digit addition of two non-negative integers. Prompt <c>"123+45="</c>, reference
/// <c>"168"</c>.
/// </summary>
/// <remarks>
/// <para>Each operand independently gets a digit count uniform in
/// [<see cref="MinDigits"/>, <see cref="MaxDigits"/>], then a value uniform among the numbers with
/// exactly that many digits (one digit: 0..9; d digits: 10^(d-1)..10^d - 1).</para>
/// <para>Checker: the response, with surrounding whitespace trimmed, must be exactly the sum in
/// canonical decimal (ASCII digits, no sign, no leading zeros); anything else is wrong. Reward 1 when
/// correct, else 0. The verdict is computed from the prompt alone (the example's reference is not
/// consulted).</para>
/// <para>Splits: the canonical problem is the unordered operand pair, so "a+b" and "b+a" are always in
/// the same split.</para>
/// </remarks>
internal sealed class AdditionTask : ITask, ISeededTrainingOrder
{
    /// <summary>The largest supported digit count per operand.</summary>
    public const int MaxSupportedDigits = 17;

    /// <summary>Creates the task.</summary>
    /// <param name="minDigits">Fewest digits of an operand (1..<see cref="MaxSupportedDigits"/>).</param>
    /// <param name="maxDigits">Most digits of an operand (<paramref name="minDigits"/>..<see cref="MaxSupportedDigits"/>).</param>
    /// <param name="seed">Seed of the example generator.</param>
    /// <exception cref="Core.EngineException">An option is out of range.</exception>
    public AdditionTask(int minDigits = 1, int maxDigits = 3, ulong seed = 0)
    {
        TaskRandom.Require(minDigits is >= 1 and <= MaxSupportedDigits, TaskName,
            $"MinDigits must be in 1..{MaxSupportedDigits} (got {minDigits})");
        TaskRandom.Require(maxDigits >= minDigits && maxDigits <= MaxSupportedDigits, TaskName,
            $"MaxDigits must be in MinDigits..{MaxSupportedDigits} = {minDigits}..{MaxSupportedDigits} (got {maxDigits})");
        MinDigits = minDigits;
        MaxDigits = maxDigits;
        Seed = seed;
    }

    private const string TaskName = "addition";

    /// <summary>Fewest digits of an operand.</summary>
    public int MinDigits { get; }

    /// <summary>Most digits of an operand.</summary>
    public int MaxDigits { get; }

    /// <summary>Seed of the example generator.</summary>
    public ulong Seed { get; }

    /// <inheritdoc/>
    public string Name => TaskName;

    /// <inheritdoc/>
    /// <remarks>Digits, '+' and '='. (The checker also tolerates surrounding whitespace, which is not listed.)</remarks>
    public string Alphabet => "0123456789+=";

    /// <inheritdoc/>
    /// <remarks>The sum of two operands of at most <see cref="MaxDigits"/> digits has at most one digit more.</remarks>
    public int MaxResponseLength => MaxDigits + 1;

    /// <inheritdoc/>
    public TaskExample TrainExample(ulong orderSeed, long index) => TrainingOrder.FromStream(this, orderSeed, index);

    /// <inheritdoc/>
    public TaskExample Example(DataSplit split, long index)
    {
        var rng = TaskRandom.ForExample(Seed, TaskName, split, index);
        for (int draw = 0; draw < TaskRandom.MaxDraws; draw++)
        {
            long a = DrawOperand(ref rng);
            long b = DrawOperand(ref rng);
            // Same as TaskRandom.SplitOf(CanonicalKey(a, b)), without building the string.
            var key = new KeyHash().Append("addition:").Append(Math.Min(a, b)).Append('+').Append(Math.Max(a, b));
            if (TaskRandom.SplitOf(key) == split)
            {
                return new TaskExample($"{TaskRandom.Text(a)}+{TaskRandom.Text(b)}=", TaskRandom.Text(a + b));
            }
        }

        throw TaskRandom.NoProblemFound(TaskName, split);
    }

    /// <inheritdoc/>
    public RewardResult Score(TaskExample example, string response)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(response);
        if (!TryParsePrompt(example.Prompt, out long a, out long b))
        {
            throw TaskRandom.BadPrompt(TaskName, example.Prompt);
        }

        bool correct = response.AsSpan().Trim().SequenceEqual(TaskRandom.Text(a + b));
        return correct ? new RewardResult(1, true) : new RewardResult(0, false);
    }

    /// <summary>The canonical problem of a prompt (what decides its split), or null when the prompt is malformed.</summary>
    internal static string? CanonicalKeyOf(string prompt) =>
        TryParsePrompt(prompt, out long a, out long b) ? CanonicalKey(a, b) : null;

    private static string CanonicalKey(long a, long b) =>
        $"addition:{TaskRandom.Text(Math.Min(a, b))}+{TaskRandom.Text(Math.Max(a, b))}";

    private long DrawOperand(ref Util.SplitMix64 rng)
    {
        int digits = (int)TaskRandom.Between(ref rng, MinDigits, MaxDigits);
        long hi = Pow10(digits) - 1;
        long lo = digits == 1 ? 0 : Pow10(digits - 1);
        return TaskRandom.Between(ref rng, lo, hi);
    }

    private static long Pow10(int e)
    {
        long p = 1;
        for (int i = 0; i < e; i++)
        {
            p *= 10;
        }

        return p;
    }

    private static bool TryParsePrompt(string prompt, out long a, out long b)
    {
        a = b = 0;
        ReadOnlySpan<char> p = prompt;
        int plus = p.IndexOf('+');
        return plus > 0 && p.Length > plus + 2 && p[^1] == '='
            && TaskRandom.TryParseCanonical(p[..plus], out a)
            && TaskRandom.TryParseCanonical(p[(plus + 1)..^1], out b)
            && a < 100_000_000_000_000_000 && b < 100_000_000_000_000_000;
    }
}
