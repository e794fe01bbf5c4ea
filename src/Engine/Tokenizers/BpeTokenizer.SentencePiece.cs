using System.Text;
using System.Text.Json;

namespace Engine.Tokenizers;

/// <summary>Where a Metaspace pre-tokenizer puts its "▁" in front of the text.</summary>
internal enum MetaspacePrepend
{
    /// <summary>Before every text segment (between added tokens) that does not start with one.</summary>
    Always,

    /// <summary>Only before the segment at the very start of the text.</summary>
    First,

    /// <summary>Nowhere.</summary>
    Never,
}

/// <summary>The Metaspace pre-tokenizer: spaces become <paramref name="Replacement"/>; optionally split before each one.</summary>
internal sealed record Metaspace(char Replacement, MetaspacePrepend Prepend, bool Split);

/// <summary>
/// SentencePiece-style BPE (Llama-2, Mistral): model.byte_fallback. Spaces are "▁" (by the Prepend/Replace
/// normalizers of the legacy files, or the Metaspace pre-tokenizer of the newer ones); a piece starts as its
/// characters, each the vocabulary's token for it or, when it has none, the &lt;0xNN&gt; tokens of its UTF-8
/// bytes (else unk, consecutive unks fused with fuse_unk); the merges then run as for byte-level BPE. Decoding:
/// &lt;0xNN&gt; is byte NN, any other token its text with "▁" read as a space, and the decoder's Strip removes
/// leading spaces of the whole text.
/// </summary>
internal sealed partial class BpeTokenizer
{
    private const string ByteTokenFormat = "<0x{0:X2}>";

    /// <summary>Applies the Prepend/Replace normalizers (in file order) to a text segment.</summary>
    private string EditText(string text)
    {
        foreach (var (prepend, pattern, content) in _textEdits)
        {
            if (prepend is not null)
            {
                text = text.Length > 0 ? prepend + text : text;
            }
            else
            {
                text = text.Replace(pattern!, content, StringComparison.Ordinal);
            }
        }

        return text;
    }

    /// <summary>The Metaspace pre-tokenizer over one segment; <paramref name="atTextStart"/>: the segment begins the input.</summary>
    private void MetaspacePieces(string text, int start, int length, bool atTextStart, List<TextPiece> pieces)
    {
        Metaspace m = _metaspace!;
        var sb = new StringBuilder(length + 1);
        sb.Append(text, start, length).Replace(' ', m.Replacement);
        bool prepend = m.Prepend == MetaspacePrepend.Always || (m.Prepend == MetaspacePrepend.First && atTextStart);
        if (prepend && (sb.Length == 0 || sb[0] != m.Replacement))
        {
            sb.Insert(0, m.Replacement);
        }

        string s = sb.ToString();
        if (!m.Split)
        {
            pieces.Add(new TextPiece(s, 0, s.Length));
            return;
        }

        // Split before each replacement character (Hugging Face's MergedWithNext).
        int from = 0;
        for (int i = 1; i <= s.Length; i++)
        {
            if (i == s.Length || s[i] == m.Replacement)
            {
                pieces.Add(new TextPiece(s, from, i - from));
                from = i;
            }
        }
    }

    /// <summary>A piece's first symbols: per character its token, else its bytes' &lt;0xNN&gt; tokens, else unk. Returns the count.</summary>
    private int CharSymbols(ReadOnlySpan<char> piece, EncodeState st)
    {
        st.EnsureSymbols(4 * piece.Length);
        int[] ids = st.SymbolIds;
        Span<byte> utf8 = stackalloc byte[4];
        int n = 0;
        for (int i = 0; i < piece.Length;)
        {
            int width = char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
            ReadOnlySpan<char> c = piece.Slice(i, width);
            i += width;
            if (_vocabBySpan.TryGetValue(c, out int id))
            {
                ids[n++] = id;
                continue;
            }

            int bytes = Encoding.UTF8.GetBytes(c, utf8); // a lone surrogate -> EF BF BD
            bool allBytes = true;
            for (int b = 0; b < bytes; b++)
            {
                allBytes &= _byteIds[utf8[b]] >= 0;
            }

            if (allBytes)
            {
                for (int b = 0; b < bytes; b++)
                {
                    ids[n++] = _byteIds[utf8[b]];
                }
            }
            else if (_unkId is int unk)
            {
                if (!(_fuseUnk && n > 0 && ids[n - 1] == unk))
                {
                    ids[n++] = unk;
                }
            }
            else
            {
                throw new Core.EngineException($"the character \"{c}\" has no token, no complete set of <0xNN> byte tokens, and the tokenizer has no unk_token");
            }
        }

        return n;
    }

    /// <summary>The bytes a SentencePiece token stands for: &lt;0xNN&gt; is byte NN; other text with "▁" as a space.</summary>
    private static byte[] SentencePieceTokenBytes(string token) =>
        token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
        && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte b)
            ? [b]
            : Encoding.UTF8.GetBytes(token.Replace('\u2581', ' '));

    /// <summary>The pre-tokenizer of a byte_fallback file: none, or Metaspace.</summary>
    private static void ReadSentencePiecePreTokenizer(TokenizerJson j, JsonElement root, Definition d)
    {
        if (TokenizerJson.Optional(root, "pre_tokenizer") is not { } pre)
        {
            return; // the legacy files: the normalizers put in the "▁"s and the whole segment is one piece
        }

        j.Object(pre, "pre_tokenizer");
        string type = j.String(j.Required(pre, "type", "pre_tokenizer"), "pre_tokenizer.type");
        if (type != "Metaspace")
        {
            throw j.Error($"pre_tokenizer \"{type}\" is not supported with byte_fallback (supported: none, Metaspace)");
        }

        string replacement = j.OptionalString(pre, "replacement", "pre_tokenizer") ?? "\u2581";
        if (replacement.Length != 1)
        {
            throw j.Error($"pre_tokenizer.replacement \"{replacement}\" must be one character");
        }

        MetaspacePrepend prepend = j.OptionalString(pre, "prepend_scheme", "pre_tokenizer") switch
        {
            "always" => MetaspacePrepend.Always,
            "first" => MetaspacePrepend.First,
            "never" => MetaspacePrepend.Never,
            null => j.Bool(pre, "add_prefix_space", "pre_tokenizer", absent: true) ? MetaspacePrepend.Always : MetaspacePrepend.Never,
            string other => throw j.Error($"pre_tokenizer.prepend_scheme \"{other}\" is not one of always, first, never"),
        };
        d.Metaspace = new Metaspace(replacement[0], prepend, j.Bool(pre, "split", "pre_tokenizer", absent: true));
    }

    /// <summary>One step of a byte_fallback file's decoder: Replace "▁" -> " ", ByteFallback, Fuse, Strip of leading spaces.</summary>
    private static void ReadSentencePieceDecoder(TokenizerJson j, JsonElement dec, string type, string path, Definition d)
    {
        switch (type)
        {
            case "ByteFallback":
            case "Fuse":
                return;
            case "Replace":
                JsonElement pattern = j.Object(j.Required(dec, "pattern", path), path + ".pattern");
                if (j.OptionalString(pattern, "String", path + ".pattern") != "\u2581" || j.String(j.Required(dec, "content", path), path + ".content") != " ")
                {
                    throw j.Error($"{path}: only the Replace of \"\u2581\" by \" \" is supported");
                }

                return;
            case "Strip":
                string content = j.String(j.Required(dec, "content", path), path + ".content");
                int Count(string key) => TokenizerJson.Optional(dec, key) switch
                {
                    null => 0,
                    { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out int n) && n >= 0 => n,
                    _ => throw j.Error($"{path}.{key} must be a whole number >= 0"),
                };
                int start = Count("start"), stop = Count("stop");
                if (content != " " || stop != 0)
                {
                    throw j.Error($"{path}: only a Strip of leading spaces (content \" \", stop 0) is supported");
                }

                d.StripLeadingSpaces = start;
                return;
            default:
                throw j.Error($"{path}: unsupported decoder \"{type}\" with byte_fallback (supported: Replace, ByteFallback, Fuse, Strip)");
        }
    }
}
