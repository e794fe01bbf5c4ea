using System.Text;
using Engine.Tasks;
using Engine.Util;

namespace Engine;

/// <summary>
/// Countdown-style arithmetic puzzles (as in TinyZero): combine the given numbers with
/// <c>+ - * /</c> and parentheses, each number exactly once, to reach the target. Prompt
/// <c>"15,14,19&gt;56="</c> (numbers 15, 14, 19; target 56), reference e.g. <c>"14*(19-15)"</c>.
/// </summary>
/// <remarks>
/// <para>Generator: the count is uniform in [<see cref="MinCount"/>, <see cref="MaxCount"/>] and each
/// number uniform in [<see cref="MinNumber"/>, <see cref="MaxNumber"/>] (repeats allowed); numbers
/// are redrawn until they belong to the requested split (see below). Random
/// expressions over a random ordering of the numbers (random operator, random split into left and
/// right operands at every node) are tried until one evaluates, with every intermediate value a
/// positive integer (the classic Countdown rule; exact division only), to a target in
/// [<see cref="MinTarget"/>, <see cref="MaxTarget"/>] that is not itself one of the numbers (after
/// 64 misses, new numbers are drawn); that expression, written with the fewest parentheses, is the
/// reference. So every example is solvable. The numbers are shown in the order drawn, not in the
/// order of the reference.</para>
/// <para>Checker (<see cref="Score"/>): the response must be an expression of
/// <c>expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*; factor := number | '(' expr ')'</c>
/// (integer literals without leading zeros, no unary minus, whitespace allowed between tokens) whose
/// numbers, as a sorted multiset, equal the given numbers sorted (TinyZero's rule), and whose exact
/// rational value (intermediate fractions and negatives allowed) equals the target. Reward 1 when
/// correct; <see cref="FormatReward"/> (default 0; TinyZero uses 0.1) for a well-formed expression
/// with the right numbers but another value; 0 otherwise (malformed, wrong numbers, division by
/// zero). The verdict is computed from the prompt alone.</para>
/// <para>Splits: the canonical problem is the multiset of numbers (sorted), without the target: a set
/// of numbers seen in training never appears in a test puzzle, whatever the target or order.</para>
/// </remarks>
internal sealed class CountdownTask : ITask, ISeededTrainingOrder
{
    /// <summary>The most numbers a puzzle may have.</summary>
    public const int MaxSupportedCount = 6;

    /// <summary>The largest number a puzzle may give.</summary>
    public const int MaxSupportedNumber = 1000;

    /// <summary>The largest target.</summary>
    public const int MaxSupportedTarget = 1_000_000;

    private const string TaskName = "countdown";
    private const string Operators = "+-*/";

    /// <summary>Random expressions tried on one draw of numbers before drawing new numbers.</summary>
    private const int ExpressionTries = 64;

    /// <summary>Creates the task.</summary>
    /// <param name="minCount">Fewest numbers per puzzle (2..<see cref="MaxSupportedCount"/>).</param>
    /// <param name="maxCount">Most numbers per puzzle (<paramref name="minCount"/>..<see cref="MaxSupportedCount"/>).</param>
    /// <param name="minNumber">Smallest given number (1..<see cref="MaxSupportedNumber"/>).</param>
    /// <param name="maxNumber">Largest given number (<paramref name="minNumber"/>..<see cref="MaxSupportedNumber"/>).</param>
    /// <param name="minTarget">Smallest target (1..<see cref="MaxSupportedTarget"/>).</param>
    /// <param name="maxTarget">Largest target (<paramref name="minTarget"/>..<see cref="MaxSupportedTarget"/>).</param>
    /// <param name="formatReward">Reward for a well-formed expression with the right numbers but the wrong value, in [0, 1).</param>
    /// <param name="seed">Seed of the example generator.</param>
    /// <exception cref="Core.EngineException">An option is out of range.</exception>
    public CountdownTask(int minCount = 3, int maxCount = 3, int minNumber = 1, int maxNumber = 20,
        int minTarget = 1, int maxTarget = 100, double formatReward = 0, ulong seed = 0)
    {
        TaskRandom.Require(minCount is >= 2 and <= MaxSupportedCount, TaskName,
            $"MinCount must be in 2..{MaxSupportedCount} (got {minCount})");
        TaskRandom.Require(maxCount >= minCount && maxCount <= MaxSupportedCount, TaskName,
            $"MaxCount must be in MinCount..{MaxSupportedCount} = {minCount}..{MaxSupportedCount} (got {maxCount})");
        TaskRandom.Require(minNumber is >= 1 and <= MaxSupportedNumber, TaskName,
            $"MinNumber must be in 1..{MaxSupportedNumber} (got {minNumber})");
        TaskRandom.Require(maxNumber >= minNumber && maxNumber <= MaxSupportedNumber, TaskName,
            $"MaxNumber must be in MinNumber..{MaxSupportedNumber} = {minNumber}..{MaxSupportedNumber} (got {maxNumber})");
        TaskRandom.Require(minTarget is >= 1 and <= MaxSupportedTarget, TaskName,
            $"MinTarget must be in 1..{MaxSupportedTarget} (got {minTarget})");
        TaskRandom.Require(maxTarget >= minTarget && maxTarget <= MaxSupportedTarget, TaskName,
            $"MaxTarget must be in MinTarget..{MaxSupportedTarget} = {minTarget}..{MaxSupportedTarget} (got {maxTarget})");
        TaskRandom.Require(formatReward is >= 0 and < 1, TaskName,
            $"FormatReward must be in [0, 1) (got {formatReward})");
        MinCount = minCount;
        MaxCount = maxCount;
        MinNumber = minNumber;
        MaxNumber = maxNumber;
        MinTarget = minTarget;
        MaxTarget = maxTarget;
        FormatReward = formatReward;
        Seed = seed;
    }

    /// <summary>Fewest numbers per puzzle.</summary>
    public int MinCount { get; }

    /// <summary>Most numbers per puzzle.</summary>
    public int MaxCount { get; }

    /// <summary>Smallest given number.</summary>
    public int MinNumber { get; }

    /// <summary>Largest given number.</summary>
    public int MaxNumber { get; }

    /// <summary>Smallest target.</summary>
    public int MinTarget { get; }

    /// <summary>Largest target.</summary>
    public int MaxTarget { get; }

    /// <summary>Reward for a well-formed expression that uses exactly the given numbers but misses the target.</summary>
    public double FormatReward { get; }

    /// <summary>Seed of the example generator.</summary>
    public ulong Seed { get; }

    /// <inheritdoc/>
    public string Name => TaskName;

    /// <inheritdoc/>
    /// <remarks>
    /// Digits, the four operators, parentheses, and the prompt's ',', '&gt;' and '='. (The checker also
    /// tolerates whitespace around and between tokens, which is not listed.)
    /// </remarks>
    public string Alphabet => "0123456789+-*/()=,>";

    /// <inheritdoc/>
    /// <remarks>
    /// The reference has <see cref="MaxCount"/> numbers of at most the digits of
    /// <see cref="MaxNumber"/>, one operator fewer, and at most one pair of parentheses per operator
    /// node other than the root. Any expression written with the fewest parentheses fits this bound;
    /// the checker also accepts longer ones (redundant parentheses, spaces).
    /// </remarks>
    public int MaxResponseLength =>
        (MaxCount * TaskRandom.Text(MaxNumber).Length) + (MaxCount - 1) + (2 * (MaxCount - 2));

    /// <inheritdoc/>
    public TaskExample TrainExample(ulong orderSeed, long index) => TrainingOrder.FromStream(this, orderSeed, index);

    /// <inheritdoc/>
    public TaskExample Example(DataSplit split, long index)
    {
        var rng = TaskRandom.ForExample(Seed, TaskName, split, index);
        Span<long> numbers = stackalloc long[MaxSupportedCount];
        Span<long> leaves = stackalloc long[MaxSupportedCount];
        var text = new StringBuilder();
        for (int draw = 0; draw < TaskRandom.MaxDraws; draw++)
        {
            int count = (int)TaskRandom.Between(ref rng, MinCount, MaxCount);
            Span<long> given = numbers[..count];
            for (int i = 0; i < count; i++)
            {
                given[i] = TaskRandom.Between(ref rng, MinNumber, MaxNumber);
            }

            if (SplitOf(given) != split || !TryFindExpression(ref rng, given, leaves[..count], text, out long target))
            {
                continue;
            }

            var prompt = new StringBuilder();
            for (int i = 0; i < count; i++)
            {
                prompt.Append(i == 0 ? "" : ",").Append(TaskRandom.Text(given[i]));
            }

            prompt.Append('>').Append(TaskRandom.Text(target)).Append('=');
            return new TaskExample(prompt.ToString(), text.ToString());
        }

        throw TaskRandom.NoProblemFound(TaskName, split);
    }

    /// <inheritdoc/>
    public RewardResult Score(TaskExample example, string response)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(response);
        if (!TryParsePrompt(example.Prompt, out long[] numbers, out long target))
        {
            throw TaskRandom.BadPrompt(TaskName, example.Prompt);
        }

        return Check(response, numbers, target, out bool hitsTarget) switch
        {
            ExpressionVerdict.Evaluated when hitsTarget => new RewardResult(1, true),
            ExpressionVerdict.Evaluated => new RewardResult(FormatReward, false),
            _ => new RewardResult(0, false),
        };
    }

    /// <summary>The checker's verdict on <paramref name="response"/>, and whether its value is <paramref name="target"/>.</summary>
    internal static ExpressionVerdict Check(string response, ReadOnlySpan<long> numbers, long target, out bool hitsTarget)
    {
        ExpressionVerdict verdict = ArithmeticExpression.Check(response, numbers, out Rational value);
        hitsTarget = verdict == ExpressionVerdict.Evaluated && value.EqualsInteger(target);
        return verdict;
    }

    /// <summary>The canonical problem of a prompt (what decides its split), or null when the prompt is malformed.</summary>
    internal static string? CanonicalKeyOf(string prompt) =>
        TryParsePrompt(prompt, out long[] numbers, out _) ? CanonicalKey(numbers) : null;

    /// <summary>Parses <c>"a,b,c&gt;t="</c>.</summary>
    internal static bool TryParsePrompt(string prompt, out long[] numbers, out long target)
    {
        numbers = [];
        target = 0;
        ReadOnlySpan<char> p = prompt;
        int gt = p.IndexOf('>');
        if (gt <= 0 || p.Length < gt + 3 || p[^1] != '=' || !TaskRandom.TryParseCanonical(p[(gt + 1)..^1], out target))
        {
            return false;
        }

        var list = new List<long>();
        foreach (Range r in p[..gt].Split(','))
        {
            if (!TaskRandom.TryParseCanonical(p[..gt][r], out long n) || list.Count == MaxSupportedCount)
            {
                return false;
            }

            list.Add(n);
        }

        numbers = [.. list];
        return true;
    }

    /// <summary>The split of the numbers, as <c>TaskRandom.SplitOf(CanonicalKey(numbers))</c> without the strings.</summary>
    private static DataSplit SplitOf(ReadOnlySpan<long> numbers)
    {
        Span<long> sorted = stackalloc long[numbers.Length];
        numbers.CopyTo(sorted);
        sorted.Sort();
        var key = new KeyHash().Append("countdown:");
        for (int i = 0; i < sorted.Length; i++)
        {
            key = (i == 0 ? key : key.Append(',')).Append(sorted[i]);
        }

        return TaskRandom.SplitOf(key);
    }

    private static string CanonicalKey(ReadOnlySpan<long> numbers)
    {
        long[] sorted = numbers.ToArray();
        Array.Sort(sorted);
        return "countdown:" + string.Join(',', sorted.Select(TaskRandom.Text));
    }

    /// <summary>
    /// Tries random expressions over <paramref name="given"/> until one is acceptable; writes it to
    /// <paramref name="text"/>.
    /// </summary>
    private bool TryFindExpression(ref SplitMix64 rng, ReadOnlySpan<long> given, Span<long> leaves, StringBuilder text, out long target)
    {
        for (int attempt = 0; attempt < ExpressionTries; attempt++)
        {
            given.CopyTo(leaves);
            for (int i = leaves.Length - 1; i > 0; i--)
            {
                int j = (int)TaskRandom.Below(ref rng, i + 1);
                (leaves[i], leaves[j]) = (leaves[j], leaves[i]);
            }

            // First pass evaluates; only an accepted expression is replayed (same generator state) to print it.
            SplitMix64 replay = rng;
            if (!Build(ref rng, leaves, 0, null, out target)
                || target < MinTarget || target > MaxTarget || given.Contains(target))
            {
                continue;
            }

            text.Clear();
            Build(ref replay, leaves, 0, text, out _);
            return true;
        }

        target = 0;
        return false;
    }

    /// <summary>
    /// Builds a random expression over <paramref name="leaves"/> in order: an operator, then a split
    /// point, then the two operands. Every value must be a positive integer (exact division only).
    /// When <paramref name="text"/> is given, writes the expression, wrapped in parentheses when its
    /// operator binds looser than <paramref name="requiredPrecedence"/> (1 for + -, 2 for * /, 3 for a
    /// number).
    /// </summary>
    private static bool Build(ref SplitMix64 rng, ReadOnlySpan<long> leaves, int requiredPrecedence, StringBuilder? text, out long value)
    {
        if (leaves.Length == 1)
        {
            value = leaves[0];
            text?.Append(TaskRandom.Text(value));
            return true;
        }

        char op = Operators[(int)TaskRandom.Below(ref rng, Operators.Length)];
        int split = (int)TaskRandom.Between(ref rng, 1, leaves.Length - 1);
        int precedence = op is '+' or '-' ? 1 : 2;
        bool wrap = precedence < requiredPrecedence;
        // Fewest parentheses for exact arithmetic: a+(b-c) = a+b-c and a*(b/c) = a*b/c, but the right
        // operand of '-' needs them around + -, and the right operand of '/' around any operator.
        (int leftNeed, int rightNeed) = op switch
        {
            '+' => (1, 1),
            '-' => (1, 2),
            '*' => (2, 2),
            _ => (2, 3),
        };
        if (wrap)
        {
            text?.Append('(');
        }

        value = 0;
        if (!Build(ref rng, leaves[..split], leftNeed, text, out long a))
        {
            return false;
        }

        text?.Append(op);
        if (!Build(ref rng, leaves[split..], rightNeed, text, out long b))
        {
            return false;
        }

        if (wrap)
        {
            text?.Append(')');
        }

        switch (op)
        {
            case '+':
                value = checked(a + b);
                return true;
            case '-':
                value = a - b;
                return value > 0;
            case '*':
                value = checked(a * b);
                return true;
            default:
                value = a / b;
                return a % b == 0;
        }
    }
}
