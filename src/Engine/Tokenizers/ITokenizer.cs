using System.Text;
using Engine.Core;

namespace Engine.Tokenizers;

/// <summary>
/// Text to token ids and back. Implementations are immutable after construction and safe to use
/// from several threads at once.
/// </summary>
/// <remarks>
/// Every token stands for a byte string (<see cref="TokenBytes"/>); decoding concatenates them
/// and reads the result as UTF-8, with U+FFFD for bytes that are not valid UTF-8 (including an
/// incomplete character at the end, as when decoding a prefix of a generation). For streaming,
/// use <see cref="CreateStreamDecoder"/>, which holds such trailing bytes back until they
/// complete. <see cref="Encode"/> adds no BOS/EOS or other template tokens.
/// </remarks>
internal interface ITokenizer
{
    /// <summary>One more than the largest token id (holes included).</summary>
    int VocabSize { get; }

    /// <summary>The begin-of-sequence token, when the tokenizer knows one.</summary>
    int? BosTokenId { get; }

    /// <summary>The end-of-sequence token, when the tokenizer knows one.</summary>
    int? EosTokenId { get; }

    /// <summary>The padding token, when the tokenizer knows one.</summary>
    int? PadTokenId { get; }

    /// <summary>Token ids for <paramref name="text"/>; special tokens written in the text are recognised.</summary>
    int[] Encode(string text);

    /// <summary>The text of <paramref name="ids"/> (see the remarks on invalid UTF-8).</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>The token's string as the vocabulary spells it (byte-level BPE: e.g. "Ġthe" for " the").</summary>
    string IdToToken(int id);

    /// <summary>The id of a token spelled as in the vocabulary, or of an added/special token's content.</summary>
    bool TryGetTokenId(string token, out int id);

    /// <summary>The id of the special token with this content (e.g. "&lt;|endoftext|&gt;").</summary>
    bool TryGetSpecialTokenId(string content, out int id);

    /// <summary>True for special tokens (skipped by <c>Decode(..., skipSpecialTokens: true)</c>).</summary>
    bool IsSpecialToken(int id);

    /// <summary>The bytes token <paramref name="id"/> decodes to (special tokens: their content's UTF-8).</summary>
    ReadOnlySpan<byte> TokenBytes(int id);

    /// <summary>A decoder for streaming generation (see <see cref="TokenStreamDecoder"/>).</summary>
    TokenStreamDecoder CreateStreamDecoder(bool skipSpecialTokens = false);

    /// <summary>Leading spaces decoding removes from the whole text (SentencePiece's Strip decoder: the "▁" it put in front).</summary>
    int LeadingSpacesStripped => 0;
}

/// <summary>Decoding shared by the tokenizers.</summary>
internal static class TokenText
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    /// <summary>Concatenates the tokens' bytes and reads them as UTF-8 (U+FFFD for invalid sequences).</summary>
    public static string Decode(ITokenizer tokenizer, ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids)
        {
            if (skipSpecialTokens && tokenizer.IsSpecialToken(id))
            {
                continue;
            }
            bytes.AddRange(tokenizer.TokenBytes(id));
        }
        string text = Utf8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
        return StripLeadingSpaces(text, tokenizer.LeadingSpacesStripped);
    }

    /// <summary>Removes up to <paramref name="count"/> leading spaces.</summary>
    public static string StripLeadingSpaces(string text, int count)
    {
        int cut = 0;
        while (cut < count && cut < text.Length && text[cut] == ' ')
        {
            cut++;
        }
        return cut == 0 ? text : text[cut..];
    }

    /// <summary>Checks an id against the vocabulary size.</summary>
    public static void CheckId(int id, int vocabSize)
    {
        if ((uint)id >= (uint)vocabSize)
        {
            throw new EngineException($"token id {id} is outside the vocabulary (ids 0..{vocabSize - 1})");
        }
    }
}

/// <summary>
/// Incremental decoding for streaming generation. <see cref="Append(int)"/> returns the text that
/// the new token completes; bytes that do not yet form a complete UTF-8 character are held back
/// (no U+FFFD mid-stream for a character split across tokens) and come out with the token that
/// completes them. Bytes that can never become valid UTF-8 produce U+FFFD as soon as that is
/// certain. <see cref="Flush"/> ends the stream: held-back bytes then become U+FFFD. The
/// concatenation of every Append and the final Flush equals <see cref="ITokenizer.Decode"/> of all
/// the ids. Not thread-safe (one per stream).
/// </summary>
internal sealed class TokenStreamDecoder
{
    private readonly ITokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];
    private int _toStrip;

    /// <summary>Creates a decoder for <paramref name="tokenizer"/>.</summary>
    public TokenStreamDecoder(ITokenizer tokenizer, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _toStrip = tokenizer.LeadingSpacesStripped;
    }

    /// <summary>Adds one token; returns the newly completed text (possibly empty).</summary>
    public string Append(int id)
    {
        if (_skipSpecialTokens && _tokenizer.IsSpecialToken(id))
        {
            return string.Empty;
        }
        return Feed(_tokenizer.TokenBytes(id), flush: false);
    }

    /// <summary>Adds several tokens; returns the newly completed text.</summary>
    public string Append(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            sb.Append(Append(id));
        }
        return sb.ToString();
    }

    /// <summary>Ends the stream: returns what is held back (U+FFFD for an incomplete character) and resets.</summary>
    public string Flush()
    {
        string rest = Feed([], flush: true);
        _toStrip = _tokenizer.LeadingSpacesStripped;
        return rest;
    }

    /// <summary>Drops anything held back and starts a new stream.</summary>
    public void Reset()
    {
        _utf8.Reset();
        _toStrip = _tokenizer.LeadingSpacesStripped;
    }

    private string Feed(ReadOnlySpan<byte> bytes, bool flush)
    {
        int need = _utf8.GetCharCount(bytes, flush) + 1;
        if (_chars.Length < need)
        {
            _chars = new char[Math.Max(need, _chars.Length * 2)];
        }
        int n = _utf8.GetChars(bytes, _chars, flush);
        int cut = 0;
        while (_toStrip > 0 && cut < n)
        {
            // The text's leading spaces (the decoder's Strip) go; the first other character ends the stripping.
            if (_chars[cut] == ' ')
            {
                cut++;
                _toStrip--;
            }
            else
            {
                _toStrip = 0;
            }
        }
        return n == cut ? string.Empty : new string(_chars, cut, n - cut);
    }
}
