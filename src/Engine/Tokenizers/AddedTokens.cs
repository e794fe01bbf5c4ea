using System.Globalization;
using System.Text;

namespace Engine.Tokenizers;

/// <summary>An entry of tokenizer.json's <c>added_tokens</c>.</summary>
/// <param name="Id">Token id.</param>
/// <param name="Content">The literal text.</param>
/// <param name="Special">Special tokens can be skipped when decoding.</param>
/// <param name="LStrip">The match also swallows whitespace on its left.</param>
/// <param name="RStrip">The match also swallows whitespace on its right.</param>
/// <param name="Normalized">Matched in the normalized text (else in the raw text, before normalization).</param>
/// <param name="SingleWord">Matched only when no word character touches it on either side.</param>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool Normalized, bool SingleWord);

/// <summary>A span of text: an added token's match (TokenId &gt;= 0) or ordinary text (TokenId = -1).</summary>
internal readonly record struct TextSegment(int Start, int Length, int TokenId);

/// <summary>
/// Splits added tokens out of text the way Hugging Face's AddedVocabulary does: scanning left to
/// right, at the first position where some token matches, the longest token matching there wins
/// (aho-corasick leftmost-longest); a single_word token touching a word character is not
/// split out (its text stays ordinary and the scan resumes after it); lstrip/rstrip widen the
/// match over adjacent whitespace (lstrip not past the previous match).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, (string Content, AddedToken Token)[]> _byFirstChar = [];

    /// <summary>Builds a matcher over <paramref name="tokens"/>, matched by <paramref name="contentOf"/>(token).</summary>
    public AddedTokenMatcher(IEnumerable<AddedToken> tokens, Func<AddedToken, string> contentOf)
    {
        var groups = new Dictionary<char, List<(string, AddedToken)>>();
        foreach (AddedToken t in tokens)
        {
            string content = contentOf(t);
            if (content.Length == 0)
            {
                continue;
            }
            if (!groups.TryGetValue(content[0], out var list))
            {
                groups[content[0]] = list = [];
            }
            list.Add((content, t));
        }
        foreach (var (c, list) in groups)
        {
            // Longest first; equal lengths keep file order.
            _byFirstChar[c] = [.. list.OrderByDescending(e => e.Item1.Length)];
        }
    }

    /// <summary>True when there is nothing to match.</summary>
    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Appends the segments of <c>text[start..start+length]</c> to <paramref name="output"/>.</summary>
    public void Split(string text, int start, int length, List<TextSegment> output)
    {
        int end = start + length;
        if (IsEmpty)
        {
            if (length > 0)
            {
                output.Add(new TextSegment(start, length, -1));
            }
            return;
        }
        int segmentStart = start; // start of the pending ordinary text
        int i = start;
        while (i < end)
        {
            (string Content, AddedToken Token)? hit = null;
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                foreach (var candidate in candidates)
                {
                    if (candidate.Content.Length <= end - i && text.AsSpan(i, candidate.Content.Length).SequenceEqual(candidate.Content))
                    {
                        hit = candidate;
                        break;
                    }
                }
            }
            if (hit is null)
            {
                i++;
                continue;
            }
            var (content, token) = hit.Value;
            int matchStart = i, matchEnd = i + content.Length;
            if (token.SingleWord && (EndsWithWordChar(text, start, matchStart) || StartsWithWordChar(text, matchEnd, end)))
            {
                i = matchEnd; // skipped, like the reference: the scan does not retry inside this match
                continue;
            }
            if (token.LStrip)
            {
                while (matchStart > segmentStart && char.IsWhiteSpace(text[matchStart - 1]))
                {
                    matchStart--;
                }
            }
            if (token.RStrip)
            {
                while (matchEnd < end && char.IsWhiteSpace(text[matchEnd]))
                {
                    matchEnd++;
                }
            }
            if (matchStart > segmentStart)
            {
                output.Add(new TextSegment(segmentStart, matchStart - segmentStart, -1));
            }
            output.Add(new TextSegment(matchStart, matchEnd - matchStart, token.Id));
            segmentStart = i = matchEnd;
        }
        if (segmentStart < end)
        {
            output.Add(new TextSegment(segmentStart, end - segmentStart, -1));
        }
    }

    private static bool EndsWithWordChar(string text, int start, int at)
    {
        if (at <= start)
        {
            return false;
        }
        int i = at - 1;
        if (char.IsLowSurrogate(text[i]) && i > start && char.IsHighSurrogate(text[i - 1]))
        {
            i--;
        }
        return Rune.TryGetRuneAt(text, i, out Rune r) && IsWordChar(r);
    }

    private static bool StartsWithWordChar(string text, int at, int end) =>
        at < end && Rune.TryGetRuneAt(text, at, out Rune r) && IsWordChar(r);

    /// <summary>Unicode \w, approximated by category: letters, marks, decimal/letter numbers, connector punctuation, ZWJ/ZWNJ.</summary>
    private static bool IsWordChar(Rune r)
    {
        if (r.Value is 0x200C or 0x200D)
        {
            return true;
        }
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark
                or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark or UnicodeCategory.DecimalDigitNumber
                or UnicodeCategory.LetterNumber or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }
}
