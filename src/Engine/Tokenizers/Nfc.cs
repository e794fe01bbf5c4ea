using System.Text;

namespace Engine.Tokenizers;

/// <summary>
/// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
/// composition; UAX #15) with the engine's own tables (<c>NfcData.g.cs</c>).
/// </summary>
/// <remarks>
/// Not <see cref="string.Normalize(NormalizationForm)"/>: with InvariantGlobalization (how the
/// engine's projects build, and a common host setting) that call leaves non-ASCII text
/// unchanged, so a Qwen2-style NFC normalizer would silently do nothing. The tables come from
/// Python's unicodedata (<see cref="UnicodeVersion"/>); Hangul syllables are handled
/// algorithmically. Lone surrogates pass through unchanged. Thread-safe.
/// </remarks>
internal static partial class Nfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private sealed class Tables
    {
        /// <summary>Code point -> index into <see cref="Decompositions"/> (4 ints per entry).</summary>
        public readonly Dictionary<int, int> Decomposition = [];
        /// <summary>(first &lt;&lt; 21 | second) -> composite, for pairs that recompose.</summary>
        public readonly Dictionary<long, int> Composition = [];
        /// <summary>Code points that can be the second of a composing pair.</summary>
        public readonly HashSet<int> ComposesWithPrevious = [];

        public Tables()
        {
            ReadOnlySpan<int> d = Decompositions;
            for (int i = 0; i < d.Length; i += 4)
            {
                Decomposition.Add(d[i], i);
                if (d[i + 3] != 0)
                {
                    Composition.Add(((long)d[i + 1] << 21) | (uint)d[i + 2], d[i]);
                    ComposesWithPrevious.Add(d[i + 2]);
                }
            }
        }
    }

    private static Tables Data => LazyTables.Value;

    private static class LazyTables
    {
        public static readonly Tables Value = new();
    }

    /// <summary>Returns the NFC form of <paramref name="text"/> (the same instance when already NFC by the quick check).</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return IsQuickNfc(text) ? text : NormalizeSlow(text);
    }

    /// <summary>Returns the NFC form of <paramref name="text"/>.</summary>
    public static string Normalize(ReadOnlySpan<char> text) => IsQuickNfc(text) ? text.ToString() : NormalizeSlow(text);

    /// <summary>
    /// True when no code point can change under NFC: none has a decomposition, a nonzero
    /// combining class, or composes with what precedes it. (False does not mean "not NFC".)
    /// </summary>
    public static bool IsQuickNfc(ReadOnlySpan<char> text)
    {
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            if (c < 0x300)
            {
                i++;
                continue;
            }
            int cp = ReadCodePoint(text, ref i);
            if (MayChange(cp))
            {
                return false;
            }
        }
        return true;
    }

    private static bool MayChange(int cp)
    {
        if (cp < 0x300)
        {
            return false;
        }
        if (cp >= SBase && cp < SBase + SCount)
        {
            return false; // precomposed syllable: stable unless followed by a T jamo, which MayChange catches
        }
        if ((cp >= VBase && cp < VBase + VCount) || (cp > TBase && cp < TBase + TCount))
        {
            return true;
        }
        Tables t = Data;
        return CombiningClass(cp) != 0 || t.Decomposition.ContainsKey(cp) || t.ComposesWithPrevious.Contains(cp);
    }

    private static string NormalizeSlow(ReadOnlySpan<char> text)
    {
        var cps = new List<int>(text.Length + 8);
        int i = 0;
        while (i < text.Length)
        {
            Decompose(ReadCodePoint(text, ref i), cps);
        }
        CanonicalOrder(cps);
        Compose(cps);
        var sb = new StringBuilder(cps.Count + 4);
        foreach (int cp in cps)
        {
            if (cp < 0x10000)
            {
                sb.Append((char)cp); // also lone surrogates, passed through as they came
            }
            else
            {
                sb.Append(char.ConvertFromUtf32(cp));
            }
        }
        return sb.ToString();
    }

    /// <summary>Reads one code point at <paramref name="i"/>; a lone surrogate is returned as itself.</summary>
    private static int ReadCodePoint(ReadOnlySpan<char> text, ref int i)
    {
        char c = text[i];
        if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            int cp = char.ConvertToUtf32(c, text[i + 1]);
            i += 2;
            return cp;
        }
        i++;
        return c;
    }

    /// <summary>Full canonical decomposition of one code point, appended to <paramref name="output"/>.</summary>
    private static void Decompose(int cp, List<int> output)
    {
        int s = cp - SBase;
        if (s >= 0 && s < SCount)
        {
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
            {
                output.Add(TBase + s % TCount);
            }
            return;
        }
        if (cp < 0xC0 || !Data.Decomposition.TryGetValue(cp, out int at))
        {
            output.Add(cp);
            return;
        }
        ReadOnlySpan<int> d = Decompositions;
        Decompose(d[at + 1], output);
        if (d[at + 2] >= 0)
        {
            Decompose(d[at + 2], output);
        }
    }

    /// <summary>Stable sort of every run of nonzero-class code points by class.</summary>
    private static void CanonicalOrder(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int ccc = CombiningClass(cps[i]);
            if (ccc == 0)
            {
                continue;
            }
            int cp = cps[i];
            int j = i - 1;
            while (j >= 0)
            {
                int prev = CombiningClass(cps[j]);
                if (prev == 0 || prev <= ccc)
                {
                    break;
                }
                cps[j + 1] = cps[j];
                j--;
            }
            cps[j + 1] = cp;
        }
    }

    /// <summary>Canonical composition in place (input fully decomposed and canonically ordered).</summary>
    private static void Compose(List<int> cps)
    {
        int write = 0;
        int starter = -1;   // index in the output of the last starter
        int lastClass = -1; // class of the last code point written after that starter
        for (int read = 0; read < cps.Count; read++)
        {
            int cp = cps[read];
            int ccc = CombiningClass(cp);
            if (starter >= 0)
            {
                bool adjacent = write - 1 == starter;
                // Not blocked: nothing between, or everything between has a lower nonzero class.
                if ((adjacent || (lastClass != 0 && lastClass < ccc)) && TryCompose(cps[starter], cp, out int composite))
                {
                    cps[starter] = composite;
                    continue;
                }
            }
            if (ccc == 0)
            {
                starter = write;
            }
            lastClass = ccc;
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(int first, int second, out int composite)
    {
        int l = first - LBase, v = second - VBase;
        if (l >= 0 && l < LCount && v >= 0 && v < VCount)
        {
            composite = SBase + (l * VCount + v) * TCount;
            return true;
        }
        int s = first - SBase, t = second - TBase;
        if (s >= 0 && s < SCount && s % TCount == 0 && t > 0 && t < TCount)
        {
            composite = first + t;
            return true;
        }
        return Data.Composition.TryGetValue(((long)first << 21) | (uint)second, out composite);
    }

    /// <summary>Canonical combining class of a code point (0 for starters).</summary>
    internal static int CombiningClass(int cp)
    {
        if (cp < 0x300)
        {
            return 0;
        }
        ReadOnlySpan<int> r = CombiningClassRanges;
        int lo = 0, hi = r.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (cp < r[mid * 3])
            {
                hi = mid - 1;
            }
            else if (cp > r[mid * 3 + 1])
            {
                lo = mid + 1;
            }
            else
            {
                return r[mid * 3 + 2];
            }
        }
        return 0;
    }
}
