using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Engine.Core;

namespace Engine.Tokenizers;

/// <summary>A piece of text: <c>Text[Start..Start+Length]</c>.</summary>
internal readonly record struct TextPiece(string Text, int Start, int Length)
{
    /// <summary>The characters of the piece.</summary>
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);
}

/// <summary>
/// One regex-style pre-tokenisation step with Hugging Face's "Isolated" behaviour: the text is
/// cut into consecutive pieces, each match its own piece and each gap between matches its own
/// piece; empty pieces are dropped.
/// </summary>
internal abstract class PieceSplitter
{
    /// <summary>Appends the pieces of <c>text[start..start+length]</c> to <paramref name="pieces"/>, in order.</summary>
    public abstract void Split(string text, int start, int length, List<TextPiece> pieces);

    /// <summary>GPT-2's pattern (also ByteLevel's built-in one when use_regex is true).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's pattern (<c>PRETOKENIZE_REGEX</c> in transformers' tokenization_qwen2.py).</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's pattern: Qwen2's with digit runs of up to three.</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>
    /// The splitter for a Split pre-tokenizer's regex. The GPT-2, Qwen2 and Llama 3 patterns get
    /// hand-written scanners over code points, which match like the Rust (Oniguruma) regex the
    /// reference tokenizers library uses. Any other pattern runs on .NET's Regex, which matches
    /// per UTF-16 unit: characters outside the BMP (surrogate pairs) are then not \p{L}/\p{N},
    /// so such text may split differently from Hugging Face's.
    /// </summary>
    public static PieceSplitter ForRegex(string pattern) => pattern switch
    {
        Gpt2Pattern => Gpt2Splitter.Instance,
        Qwen2Pattern => new Qwen2Splitter(maxDigits: 1),
        Llama3Pattern => new Qwen2Splitter(maxDigits: 3),
        _ => new RegexSplitter(pattern, literal: false),
    };

    /// <summary>The splitter for a Split pre-tokenizer's literal string pattern.</summary>
    public static PieceSplitter ForLiteral(string literal) => new RegexSplitter(literal, literal: true);

    /// <summary>Letter/number/whitespace/other, as \p{L}, \p{N}, \s and the rest classify a code point.</summary>
    protected enum CharClass : byte
    {
        Other,
        Letter,
        Number,
        Space,
    }

    private static readonly CharClass[] AsciiClasses = BuildAscii();

    /// <summary>Class and width (UTF-16 units) of the code point at <paramref name="i"/>.</summary>
    protected static CharClass ClassAt(string s, int i, out int width)
    {
        char c = s[i];
        if (c < 128)
        {
            width = 1;
            return AsciiClasses[c];
        }
        if (Rune.DecodeFromUtf16(s.AsSpan(i), out Rune rune, out width) != OperationStatus.Done)
        {
            return CharClass.Other; // lone surrogate
        }
        return Classify(rune);
    }

    /// <summary>Class of a code point: \s is Unicode White_Space, \p{L} Lu/Ll/Lt/Lm/Lo, \p{N} Nd/Nl/No.</summary>
    protected static CharClass Classify(Rune rune)
    {
        if (Rune.IsWhiteSpace(rune))
        {
            return CharClass.Space;
        }
        switch (Rune.GetUnicodeCategory(rune))
        {
            case UnicodeCategory.UppercaseLetter:
            case UnicodeCategory.LowercaseLetter:
            case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter:
            case UnicodeCategory.OtherLetter:
                return CharClass.Letter;
            case UnicodeCategory.DecimalDigitNumber:
            case UnicodeCategory.LetterNumber:
            case UnicodeCategory.OtherNumber:
                return CharClass.Number;
            default:
                return CharClass.Other;
        }
    }

    /// <summary>End of the run of code points of class <paramref name="cls"/> starting at <paramref name="i"/>.</summary>
    protected static int RunEnd(string s, int i, int end, CharClass cls)
    {
        while (i < end && ClassAt(s, i, out int w) == cls)
        {
            i += w;
        }
        return i;
    }

    private static CharClass[] BuildAscii()
    {
        var t = new CharClass[128];
        for (int c = 0; c < 128; c++)
        {
            t[c] = Classify(new Rune(c));
        }
        return t;
    }
}

/// <summary>
/// GPT-2's <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c> as a
/// scanner over code points (leftmost-first alternation, as the regex engine tries it).
/// </summary>
internal sealed class Gpt2Splitter : PieceSplitter
{
    /// <summary>The shared instance (stateless).</summary>
    public static readonly Gpt2Splitter Instance = new();

    /// <inheritdoc />
    public override void Split(string text, int start, int length, List<TextPiece> pieces)
    {
        int end = start + length;
        int i = start;
        while (i < end)
        {
            int j = Match(text, i, end);
            pieces.Add(new TextPiece(text, i, j - i));
            i = j;
        }
    }

    private static int Match(string s, int i, int end)
    {
        char c = s[i];
        if (c == '\'' && i + 1 < end)
        {
            char c1 = s[i + 1];
            if (c1 is 's' or 't' or 'm' or 'd')
            {
                return i + 2;
            }
            if (i + 2 < end)
            {
                char c2 = s[i + 2];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                {
                    return i + 3;
                }
            }
        }
        CharClass cls = ClassAt(s, i, out int w);
        if (c == ' ' && i + 1 < end)
        {
            CharClass next = ClassAt(s, i + 1, out _);
            if (next != CharClass.Space)
            {
                return RunEnd(s, i + 1, end, next); // " ?\p{L}+", " ?\p{N}+" or " ?[^\s\p{L}\p{N}]+"
            }
        }
        if (cls != CharClass.Space)
        {
            return RunEnd(s, i + w, end, cls);
        }
        // \s+(?!\S) then \s+: a whitespace run, less its last character when a non-space follows.
        int j = RunEnd(s, i + w, end, CharClass.Space);
        if (j == end || j - 1 == i)
        {
            return j;
        }
        return j - 1; // every White_Space character is a single UTF-16 unit
    }
}

/// <summary>
/// Qwen2's pattern <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c> (and Llama 3's, with \p{N}{1,3}) as a
/// scanner over code points.
/// </summary>
internal sealed class Qwen2Splitter(int maxDigits) : PieceSplitter
{
    /// <inheritdoc />
    public override void Split(string text, int start, int length, List<TextPiece> pieces)
    {
        int end = start + length;
        int i = start;
        while (i < end)
        {
            int j = Match(text, i, end);
            pieces.Add(new TextPiece(text, i, j - i));
            i = j;
        }
    }

    private int Match(string s, int i, int end)
    {
        char c = s[i];
        if (c == '\'' && i + 1 < end)
        {
            // Case-insensitive: Unicode simple case folding also maps U+017F (long s) to 's'.
            char c1 = char.ToLowerInvariant(s[i + 1]);
            if (c1 is 's' or 't' or 'm' or 'd' or '\u017F')
            {
                return i + 2;
            }
            if (i + 2 < end)
            {
                char c2 = char.ToLowerInvariant(s[i + 2]);
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                {
                    return i + 3;
                }
            }
        }
        CharClass cls = ClassAt(s, i, out int w);
        if (cls == CharClass.Letter)
        {
            return RunEnd(s, i + w, end, CharClass.Letter);
        }
        if (cls != CharClass.Number && c != '\r' && c != '\n' && i + w < end && ClassAt(s, i + w, out _) == CharClass.Letter)
        {
            return RunEnd(s, i + w, end, CharClass.Letter); // [^\r\n\p{L}\p{N}]?\p{L}+
        }
        if (cls == CharClass.Number)
        {
            int j = i + w;
            for (int n = 1; n < maxDigits && j < end && ClassAt(s, j, out int wn) == CharClass.Number; n++)
            {
                j += wn;
            }
            return j;
        }
        if (c == ' ' && i + 1 < end && ClassAt(s, i + 1, out _) == CharClass.Other)
        {
            return NewlineRunEnd(s, RunEnd(s, i + 1, end, CharClass.Other), end); // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        }
        if (cls == CharClass.Other)
        {
            return NewlineRunEnd(s, RunEnd(s, i + w, end, CharClass.Other), end);
        }
        // Whitespace. \s*[\r\n]+ : up to and including the run's last \r or \n.
        int runEnd = RunEnd(s, i + w, end, CharClass.Space);
        for (int k = runEnd - 1; k >= i; k--)
        {
            if (s[k] is '\r' or '\n')
            {
                return k + 1;
            }
        }
        // \s+(?!\S) then \s+.
        if (runEnd == end || runEnd - 1 == i)
        {
            return runEnd;
        }
        return runEnd - 1;
    }

    private static int NewlineRunEnd(string s, int i, int end)
    {
        while (i < end && s[i] is '\r' or '\n')
        {
            i++;
        }
        return i;
    }
}

/// <summary>
/// Any other Split pattern, on .NET's Regex (compiled once, culture-invariant). Limitation: the
/// .NET engine matches per UTF-16 unit, so a character outside the BMP is two "characters" that
/// are neither \p{L} nor \p{N} nor \s; text with such characters can split differently from
/// Hugging Face's tokenizers (which match on code points).
/// </summary>
internal sealed class RegexSplitter : PieceSplitter
{
    private readonly Regex _regex;

    /// <summary>The longest one match may take.</summary>
    internal static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Compiles <paramref name="pattern"/> (escaped first when <paramref name="literal"/>).</summary>
    public RegexSplitter(string pattern, bool literal)
    {
        try
        {
            // A file's pattern can backtrack catastrophically: bounded, so a bad file is an error, not a hang.
            _regex = new Regex(literal ? Regex.Escape(pattern) : pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new EngineException($"pre-tokenizer regex is not supported by .NET's Regex: {pattern} ({e.Message})", e);
        }
    }

    /// <inheritdoc />
    public override void Split(string text, int start, int length, List<TextPiece> pieces)
    {
        int end = start + length;
        int at = start;
        try
        {
            Match m = _regex.Match(text, start, length);
            while (m.Success)
            {
                if (m.Length > 0)
                {
                    if (m.Index > at)
                    {
                        pieces.Add(new TextPiece(text, at, m.Index - at));
                    }
                    pieces.Add(new TextPiece(text, m.Index, m.Length));
                    at = m.Index + m.Length;
                }
                m = m.NextMatch();
            }
        }
        catch (RegexMatchTimeoutException)
        {
            throw new EngineException($"pre-tokenizer regex {_regex} took over {MatchTimeout.TotalSeconds:0} s on one match (catastrophic backtracking?)");
        }
        if (at < end)
        {
            pieces.Add(new TextPiece(text, at, end - at));
        }
    }
}
