using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Engine.Core;
using Engine.IO;

namespace Engine.Tokenizers;

/// <summary>
/// One token per character (Unicode code point) of a fixed alphabet, plus special tokens, for the
/// built-in tasks (digits, operators, letters). Ids: the special tokens first, in the given order
/// (by default <c>&lt;pad&gt;</c> = 0, <c>&lt;bos&gt;</c> = 1, <c>&lt;eos&gt;</c> = 2), then the
/// alphabet in its order.
/// </summary>
/// <remarks>
/// Encode recognises special tokens written in the text (longest literal match first, like the
/// BPE tokenizer's added tokens), so "&lt;bos&gt;1+1" is [bos, '1', '+', '1'] even when '&lt;' is in the
/// alphabet; any other character must be in the alphabet. Saved as a small JSON file,
/// <c>{"type": "char", "version": 1, "alphabet": "...", "special": ["&lt;pad&gt;", ...]}</c>, which
/// <see cref="TokenizerLoader.Load"/> tells apart from a Hugging Face tokenizer.json.
/// </remarks>
internal sealed class CharTokenizer : ITokenizer
{
    /// <summary>The "type" value of the saved JSON.</summary>
    public const string JsonType = "char";

    /// <summary>Default special tokens, in id order.</summary>
    public static readonly IReadOnlyList<string> DefaultSpecialTokens = ["<pad>", "<bos>", "<eos>"];

    private readonly string[] _tokens;
    private readonly byte[][] _tokenBytes;
    private readonly Dictionary<int, int> _idOfCodePoint = [];
    private readonly Dictionary<string, int> _specialIds = new(StringComparer.Ordinal);
    private readonly AddedTokenMatcher _specialMatcher;

    /// <summary>The characters, in id order after the special tokens.</summary>
    public string Alphabet { get; }

    /// <summary>The special tokens, in id order (ids 0..count-1).</summary>
    public IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>Creates a tokenizer for <paramref name="alphabet"/> (each code point one token).</summary>
    /// <param name="alphabet">The characters; no repeats.</param>
    /// <param name="specialTokens">Special tokens (default &lt;pad&gt;, &lt;bos&gt;, &lt;eos&gt;); distinct, non-empty.</param>
    public CharTokenizer(string alphabet, IReadOnlyList<string>? specialTokens = null)
    {
        ArgumentNullException.ThrowIfNull(alphabet);
        specialTokens ??= DefaultSpecialTokens;
        Alphabet = alphabet;
        SpecialTokens = [.. specialTokens];
        var tokens = new List<string>();
        foreach (string s in specialTokens)
        {
            if (string.IsNullOrEmpty(s))
            {
                throw new EngineException("character tokenizer: a special token is empty");
            }
            if (!_specialIds.TryAdd(s, tokens.Count))
            {
                throw new EngineException($"character tokenizer: special token \"{s}\" is listed twice");
            }
            tokens.Add(s);
        }
        int index = 0;
        foreach (Rune r in alphabet.EnumerateRunes())
        {
            if (Rune.DecodeFromUtf16(alphabet.AsSpan(index), out _, out int width) != System.Buffers.OperationStatus.Done)
            {
                throw new EngineException($"character tokenizer: the alphabet has a lone surrogate at index {index}");
            }
            index += width;
            string text = r.ToString();
            if (_specialIds.ContainsKey(text))
            {
                throw new EngineException($"character tokenizer: '{text}' is both a special token and in the alphabet");
            }
            if (!_idOfCodePoint.TryAdd(r.Value, tokens.Count))
            {
                throw new EngineException($"character tokenizer: the alphabet has '{Show(r)}' twice");
            }
            tokens.Add(text);
        }
        if (_idOfCodePoint.Count == 0)
        {
            throw new EngineException("character tokenizer: the alphabet is empty");
        }
        _tokens = [.. tokens];
        _tokenBytes = [.. tokens.Select(Encoding.UTF8.GetBytes)];
        _specialMatcher = new AddedTokenMatcher(
            specialTokens.Select((s, i) => new AddedToken(i, s, Special: true, false, false, false, false)), t => t.Content);
        BosTokenId = _specialIds.TryGetValue("<bos>", out int bos) ? bos : null;
        EosTokenId = _specialIds.TryGetValue("<eos>", out int eos) ? eos : null;
        PadTokenId = _specialIds.TryGetValue("<pad>", out int pad) ? pad : null;
    }

    /// <inheritdoc />
    public int VocabSize => _tokens.Length;

    /// <inheritdoc />
    public int? BosTokenId { get; }

    /// <inheritdoc />
    public int? EosTokenId { get; }

    /// <inheritdoc />
    public int? PadTokenId { get; }

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var segments = new List<TextSegment>();
        _specialMatcher.Split(text, 0, text.Length, segments);
        var ids = new List<int>(text.Length);
        foreach (TextSegment seg in segments)
        {
            if (seg.TokenId >= 0)
            {
                ids.Add(seg.TokenId);
                continue;
            }
            int i = seg.Start, end = seg.Start + seg.Length;
            while (i < end)
            {
                if (Rune.DecodeFromUtf16(text.AsSpan(i, end - i), out Rune r, out int width) != System.Buffers.OperationStatus.Done)
                {
                    throw new EngineException($"character tokenizer: the text has a lone surrogate at index {i}");
                }
                if (!_idOfCodePoint.TryGetValue(r.Value, out int id))
                {
                    throw new EngineException($"character tokenizer: '{Show(r)}' (U+{r.Value:X4}) at index {i} is not in the alphabet \"{Alphabet}\"");
                }
                ids.Add(id);
                i += width;
            }
        }
        return [.. ids];
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder(ids.Length);
        foreach (int id in ids)
        {
            TokenText.CheckId(id, VocabSize);
            if (!(skipSpecialTokens && id < SpecialTokens.Count))
            {
                sb.Append(_tokens[id]);
            }
        }
        return sb.ToString();
    }

    /// <inheritdoc />
    public string IdToToken(int id)
    {
        TokenText.CheckId(id, VocabSize);
        return _tokens[id];
    }

    /// <inheritdoc />
    public bool TryGetTokenId(string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_specialIds.TryGetValue(token, out id))
        {
            return true;
        }
        if (Rune.TryGetRuneAt(token, 0, out Rune r) && r.Utf16SequenceLength == token.Length)
        {
            return _idOfCodePoint.TryGetValue(r.Value, out id);
        }
        id = -1;
        return false;
    }

    /// <inheritdoc />
    public bool TryGetSpecialTokenId(string content, out int id) => _specialIds.TryGetValue(content, out id);

    /// <inheritdoc />
    public bool IsSpecialToken(int id) => id >= 0 && id < SpecialTokens.Count;

    /// <inheritdoc />
    public TokenStreamDecoder CreateStreamDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <inheritdoc />
    public ReadOnlySpan<byte> TokenBytes(int id)
    {
        TokenText.CheckId(id, VocabSize);
        return _tokenBytes[id];
    }

    /// <summary>The tokenizer as JSON: {"type": "char", "version": 1, "alphabet": ..., "special": [...]}.</summary>
    public string ToJson()
    {
        var options = new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, options))
        {
            w.WriteStartObject();
            w.WriteString("type", JsonType);
            w.WriteNumber("version", 1);
            w.WriteString("alphabet", Alphabet);
            w.WriteStartArray("special");
            foreach (string s in SpecialTokens)
            {
                w.WriteStringValue(s);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> atomically (temp file + rename).</summary>
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Reads a file written by <see cref="Save"/>.</summary>
    public static CharTokenizer FromFile(string path) => FromJson(TokenizerJson.ReadFile(path), path);

    /// <summary>Parses the JSON of <see cref="ToJson"/>.</summary>
    public static CharTokenizer FromJson(string json, string source = "tokenizer.json")
    {
        var j = new TokenizerJson(source);
        using JsonDocument doc = j.Parse(json);
        return FromJson(j, doc.RootElement);
    }

    /// <summary>Builds the tokenizer from a parsed {"type": "char", ...} object.</summary>
    internal static CharTokenizer FromJson(TokenizerJson j, JsonElement root)
    {
        j.Object(root, "the root");
        string type = j.String(j.Required(root, "type", ""), "type");
        if (type != JsonType)
        {
            throw j.Error($"type is \"{type}\", expected \"{JsonType}\"");
        }
        if (TokenizerJson.Optional(root, "version") is { } version && !(version.ValueKind == JsonValueKind.Number && version.GetRawText() == "1"))
        {
            throw j.Error($"unsupported character tokenizer version {version.GetRawText()} (this engine reads version 1)");
        }
        string alphabet = j.String(j.Required(root, "alphabet", ""), "alphabet");
        List<string>? special = null; // absent: the default special tokens; [] : none
        if (TokenizerJson.Optional(root, "special") is { } list)
        {
            special = [];
            int i = 0;
            foreach (JsonElement e in j.Array(list, "special").EnumerateArray())
            {
                special.Add(j.String(e, $"special[{i++}]"));
            }
        }
        try
        {
            return new CharTokenizer(alphabet, special);
        }
        catch (EngineException e)
        {
            throw j.Error(e.Message);
        }
    }

    private static string Show(Rune r) => Rune.IsControl(r) || Rune.IsWhiteSpace(r) ? $"\\u{r.Value:X4}" : r.ToString();
}
