using System.Globalization;
using Engine.Core;
using Engine.Util;

namespace Engine.Tasks;

/// <summary>
/// Randomness and split assignment shared by the built-in tasks.
/// </summary>
/// <remarks>
/// <para>Per-example generator: SplitMix64 seeded by mixing (seed, task salt), the split, then the
/// index, each step through the SplitMix64 finaliser. So an example depends only on
/// (seed, split, index) and never on which other examples were generated.</para>
/// <para>Split: a problem belongs to the test split when a fixed hash of its canonical key (FNV-1a 64
/// over the key's UTF-16 code units, then the SplitMix64 finaliser) is 0 modulo
/// <see cref="TestModulus"/>; otherwise to the train split. The assignment depends only on the
/// problem, not on the seed, so the test set of one run never leaks into the training set of
/// another. A generator for a split redraws until the problem falls in that split.</para>
/// </remarks>
internal static class TaskRandom
{
    /// <summary>One problem in this many (in expectation) belongs to the test split.</summary>
    public const int TestModulus = 10;

    /// <summary>Problems drawn for one example before giving up (the split or the options leave too few problems).</summary>
    public const int MaxDraws = 10_000;

    /// <summary>The SplitMix64 output for state <paramref name="x"/> (a strong 64-bit mixer).</summary>
    public static ulong Mix(ulong x) => new SplitMix64(x).NextUInt64();

    /// <summary>The generator for example <paramref name="index"/> of <paramref name="split"/>.</summary>
    public static SplitMix64 ForExample(ulong seed, string taskName, DataSplit split, long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ulong splitCode = split switch
        {
            DataSplit.Train => 0x7472_6169_6EUL, // "train"
            DataSplit.Test => 0x7465_7374UL, // "test"
            _ => throw new ArgumentOutOfRangeException(nameof(split), split, "unknown data split"),
        };
        ulong h = Mix(seed ^ Hash(taskName));
        h = Mix(h ^ splitCode);
        h = Mix(h ^ (ulong)index);
        return new SplitMix64(h);
    }

    /// <summary>Uniform integer in [0, <paramref name="n"/>) (n &gt; 0), from the high half of a 64x64-bit product.</summary>
    public static long Below(ref SplitMix64 rng, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        return (long)Math.BigMul(rng.NextUInt64(), (ulong)n, out _);
    }

    /// <summary>Uniform integer in [<paramref name="lo"/>, <paramref name="hi"/>] (inclusive).</summary>
    public static long Between(ref SplitMix64 rng, long lo, long hi) => lo + Below(ref rng, hi - lo + 1);

    /// <summary>The fixed hash of a string: FNV-1a 64 over UTF-16 code units, then the SplitMix64 finaliser.</summary>
    public static ulong Hash(string text) => new KeyHash().Append(text).Value;

    /// <summary>The split a problem with canonical key <paramref name="canonicalKey"/> belongs to.</summary>
    public static DataSplit SplitOf(string canonicalKey) => SplitOf(new KeyHash().Append(canonicalKey));

    /// <summary>The split of a problem whose canonical key was fed to <paramref name="key"/>.</summary>
    public static DataSplit SplitOf(KeyHash key) => key.Value % TestModulus == 0 ? DataSplit.Test : DataSplit.Train;

    /// <summary>The error when no problem of <paramref name="split"/> turned up in <see cref="MaxDraws"/> draws.</summary>
    public static EngineException NoProblemFound(string taskName, DataSplit split) => new(
        $"{taskName}: no {split.ToString().ToLowerInvariant()} problem found in {MaxDraws} draws; " +
        "the options leave too few problems (widen the ranges)");

    /// <summary>The error for a prompt this task did not generate.</summary>
    public static EngineException BadPrompt(string taskName, string prompt) =>
        new($"{taskName}: the prompt \"{prompt}\" is not in this task's format");

    /// <summary>Decimal text of <paramref name="value"/> (invariant culture).</summary>
    public static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses a canonical unsigned decimal (ASCII digits, no sign, no leading zero unless the value is
    /// 0, at most 18 digits).
    /// </summary>
    public static bool TryParseCanonical(ReadOnlySpan<char> text, out long value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 18 || (text[0] == '0' && text.Length > 1))
        {
            return false;
        }

        foreach (char c in text)
        {
            if (!char.IsAsciiDigit(c))
            {
                value = 0;
                return false;
            }

            value = (value * 10) + (c - '0');
        }

        return true;
    }

    /// <summary>Throws the option error "<paramref name="taskName"/>: <paramref name="message"/>" unless <paramref name="ok"/>.</summary>
    public static void Require(bool ok, string taskName, string message)
    {
        if (!ok)
        {
            throw new EngineException($"{taskName}: {message}");
        }
    }
}

/// <summary>
/// <see cref="TaskRandom.Hash"/> computed piecewise, without building the key string: appending the
/// pieces of a key gives the same value as hashing the whole key.
/// </summary>
internal struct KeyHash
{
    private ulong _h;

    /// <summary>Starts the hash of an empty key.</summary>
    public KeyHash() => _h = 0xCBF29CE484222325UL;

    /// <summary>The hash of the text appended so far.</summary>
    public readonly ulong Value => TaskRandom.Mix(_h);

    /// <summary>Appends one character.</summary>
    public KeyHash Append(char c)
    {
        _h = (_h ^ c) * 0x100000001B3UL;
        return this;
    }

    /// <summary>Appends the characters of <paramref name="text"/>.</summary>
    public KeyHash Append(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            _h = (_h ^ c) * 0x100000001B3UL;
        }

        return this;
    }

    /// <summary>Appends the decimal text of <paramref name="value"/> (as <see cref="TaskRandom.Text"/> writes it).</summary>
    public KeyHash Append(long value)
    {
        Span<char> digits = stackalloc char[20];
        value.TryFormat(digits, out int written, provider: CultureInfo.InvariantCulture);
        return Append(digits[..written]);
    }
}
