using System.Text.Json;
using Engine.Core;

namespace Engine.Tokenizers;

internal sealed partial class BpeTokenizer
{
    /// <summary>Everything read from the file, validated.</summary>
    private sealed class Definition
    {
        public Dictionary<string, int> Vocab = new(StringComparer.Ordinal);
        public List<(string Left, string Right)> Merges = [];
        public bool IgnoreMerges;
        public int? UnkId;
        public List<AddedToken> Added = [];
        public bool Nfc;
        public bool ByteFallback, FuseUnk;
        public List<(string? Prepend, string? Pattern, string? Content)> TextEdits = [];
        public Metaspace? Metaspace;
        public int StripLeadingSpaces;
        public List<PieceSplitter> Splitters = [];
        public bool AddPrefixSpace;
        public bool ByteLevelRegex;
        public string? BosToken, EosToken, PadToken;
    }

    /// <summary>
    /// Loads a Hugging Face tokenizer.json. When a tokenizer_config.json sits beside it, its
    /// bos_token / eos_token / pad_token name those tokens; otherwise they are found by the
    /// conventional spellings ("&lt;|endoftext|&gt;", "&lt;/s&gt;", ...) among the added tokens.
    /// </summary>
    public static BpeTokenizer FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return FromFileText(path, TokenizerJson.ReadFile(path));
    }

    /// <summary><see cref="FromFile"/> with the file's text already read.</summary>
    internal static BpeTokenizer FromFileText(string path, string json)
    {
        string? config = null;
        string configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            config = TokenizerJson.ReadFile(configPath);
        }
        return FromJson(json, config, path);
    }

    /// <summary>Parses tokenizer.json text (and optionally tokenizer_config.json text).</summary>
    /// <param name="json">The tokenizer.json contents.</param>
    /// <param name="tokenizerConfigJson">Optional tokenizer_config.json contents (bos/eos/pad token names).</param>
    /// <param name="source">Name used in error messages.</param>
    public static BpeTokenizer FromJson(string json, string? tokenizerConfigJson = null, string source = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        var j = new TokenizerJson(source);
        var d = new Definition();
        using (JsonDocument doc = j.Parse(json))
        {
            JsonElement root = j.Object(doc.RootElement, "the root");
            ReadModel(j, j.Object(j.Required(root, "model", ""), "model"), d);
            ReadAddedTokens(j, root, d);
            ReadNormalizer(j, TokenizerJson.Optional(root, "normalizer"), "normalizer", d);
            ReadPreTokenizer(j, root, d);
            ReadDecoder(j, TokenizerJson.Optional(root, "decoder"), "decoder", d);
        }
        CheckMerges(j, d);
        CheckIdRange(j, d);
        if (tokenizerConfigJson is not null)
        {
            ReadTokenizerConfig(new TokenizerJson("tokenizer_config.json"), tokenizerConfigJson, d);
        }
        return new BpeTokenizer(d);
    }

    private static void ReadModel(TokenizerJson j, JsonElement model, Definition d)
    {
        string? type = j.OptionalString(model, "type", "model");
        if (type is not null && type != "BPE")
        {
            throw j.Error($"unsupported tokenizer model type \"{type}\" (only byte-level BPE is supported)");
        }
        if (type is null && TokenizerJson.Optional(model, "merges") is null)
        {
            throw j.Error("model has no \"type\" and no merges: not a BPE model");
        }

        JsonElement vocab = j.Object(j.Required(model, "vocab", "model"), "model.vocab");
        var tokenOfId = new Dictionary<int, string>();
        foreach (JsonProperty p in vocab.EnumerateObject())
        {
            int id = j.Id(p.Value, $"model.vocab[\"{p.Name}\"]");
            if (!d.Vocab.TryAdd(p.Name, id))
            {
                throw j.Error($"model.vocab has the token \"{p.Name}\" twice");
            }
            if (!tokenOfId.TryAdd(id, p.Name))
            {
                throw j.Error($"model.vocab gives id {id} to two tokens: \"{tokenOfId[id]}\" and \"{p.Name}\" (duplicate id)");
            }
        }
        if (d.Vocab.Count == 0)
        {
            throw j.Error("model.vocab is empty");
        }

        if (TokenizerJson.Optional(model, "merges") is { } merges)
        {
            int i = 0;
            foreach (JsonElement m in j.Array(merges, "model.merges").EnumerateArray())
            {
                string path = $"model.merges[{i++}]";
                if (m.ValueKind == JsonValueKind.String)
                {
                    string[] parts = m.GetString()!.Split(' ');
                    if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                    {
                        throw j.Error($"{path} \"{m.GetString()}\" is not two tokens separated by one space");
                    }
                    d.Merges.Add((parts[0], parts[1]));
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
                {
                    string a = j.String(m[0], path + "[0]"), b = j.String(m[1], path + "[1]");
                    if (a.Length == 0 || b.Length == 0)
                    {
                        throw j.Error($"{path} has an empty token");
                    }
                    d.Merges.Add((a, b));
                }
                else
                {
                    throw j.Error($"{path} must be a string \"a b\" or a pair [\"a\", \"b\"], not {TokenizerJson.Describe(m)}");
                }
            }
        }

        d.IgnoreMerges = j.Bool(model, "ignore_merges", "model", absent: false);
        if (TokenizerJson.Optional(model, "dropout") is { } dropout
            && (dropout.ValueKind != JsonValueKind.Number || dropout.GetDouble() != 0))
        {
            throw j.Error($"model.dropout {dropout.GetRawText()} is not supported (BPE dropout is for training)");
        }
        d.ByteFallback = j.Bool(model, "byte_fallback", "model", absent: false);
        d.FuseUnk = j.Bool(model, "fuse_unk", "model", absent: false);
        foreach (string key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (j.OptionalString(model, key, "model") is { Length: > 0 } affix)
            {
                throw j.Error($"model.{key} \"{affix}\" is not supported (only byte-level BPE is)");
            }
        }
        if (j.OptionalString(model, "unk_token", "model") is { } unk)
        {
            d.UnkId = d.Vocab.TryGetValue(unk, out int unkId)
                ? unkId
                : throw j.Error($"model.unk_token \"{unk}\" is not in model.vocab (unknown token in the tokenizer file)");
        }
    }

    private static void ReadAddedTokens(TokenizerJson j, JsonElement root, Definition d)
    {
        if (TokenizerJson.Optional(root, "added_tokens") is not { } added)
        {
            return;
        }
        var byId = new Dictionary<int, string>();
        var contents = new HashSet<string>(StringComparer.Ordinal);
        int i = 0;
        foreach (JsonElement e in j.Array(added, "added_tokens").EnumerateArray())
        {
            string path = $"added_tokens[{i++}]";
            j.Object(e, path);
            int id = j.Id(j.Required(e, "id", path), path + ".id");
            string content = j.String(j.Required(e, "content", path), path + ".content");
            if (content.Length == 0)
            {
                throw j.Error($"{path}.content is empty");
            }
            bool special = j.Bool(e, "special", path, absent: false);
            var token = new AddedToken(id, content, special,
                LStrip: j.Bool(e, "lstrip", path, absent: false),
                RStrip: j.Bool(e, "rstrip", path, absent: false),
                Normalized: j.Bool(e, "normalized", path, absent: !special),
                SingleWord: j.Bool(e, "single_word", path, absent: false));
            if (!byId.TryAdd(id, content))
            {
                throw j.Error($"added_tokens give id {id} to two tokens: \"{byId[id]}\" and \"{content}\" (duplicate id)");
            }
            if (!contents.Add(content))
            {
                throw j.Error($"added_tokens has \"{content}\" twice");
            }
            d.Added.Add(token);
        }
    }

    private static void ReadNormalizer(TokenizerJson j, JsonElement? normalizer, string path, Definition d)
    {
        if (normalizer is not { } n)
        {
            return;
        }
        j.Object(n, path);
        string type = j.String(j.Required(n, "type", path), path + ".type");
        switch (type)
        {
            case "NFC" when d.TextEdits.Count == 0:
                d.Nfc = true;
                break;
            case "Prepend" when d.ByteFallback:
                d.TextEdits.Add((j.String(j.Required(n, "prepend", path), path + ".prepend"), null, null));
                break;
            case "Replace" when d.ByteFallback:
                JsonElement pattern = j.Object(j.Required(n, "pattern", path), path + ".pattern");
                string literal = j.OptionalString(pattern, "String", path + ".pattern") is { Length: > 0 } text
                    ? text
                    : throw j.Error($"{path}.pattern must be a non-empty {{\"String\": ...}} (regex replacements are not supported)");
                d.TextEdits.Add((null, literal, j.String(j.Required(n, "content", path), path + ".content")));
                break;
            case "Sequence":
                int i = 0;
                foreach (JsonElement inner in j.Array(j.Required(n, "normalizers", path), path + ".normalizers").EnumerateArray())
                {
                    ReadNormalizer(j, inner, $"{path}.normalizers[{i++}]", d);
                }
                break;
            default:
                throw j.Error($"{path}: unsupported normalizer \"{type}\" (supported: none, NFC; with byte_fallback also Prepend and Replace)");
        }
    }

    private static void ReadPreTokenizer(TokenizerJson j, JsonElement root, Definition d)
    {
        if (d.ByteFallback)
        {
            ReadSentencePiecePreTokenizer(j, root, d);
            return;
        }

        if (TokenizerJson.Optional(root, "pre_tokenizer") is not { } pre)
        {
            throw j.Error("pre_tokenizer is missing: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
        }
        j.Object(pre, "pre_tokenizer");
        string type = j.String(j.Required(pre, "type", "pre_tokenizer"), "pre_tokenizer.type");
        var steps = new List<(JsonElement Step, string Path)>();
        if (type == "Sequence")
        {
            int i = 0;
            foreach (JsonElement step in j.Array(j.Required(pre, "pretokenizers", "pre_tokenizer"), "pre_tokenizer.pretokenizers").EnumerateArray())
            {
                steps.Add((j.Object(step, $"pre_tokenizer.pretokenizers[{i}]"), $"pre_tokenizer.pretokenizers[{i}]"));
                i++;
            }
        }
        else
        {
            steps.Add((pre, "pre_tokenizer"));
        }

        bool byteLevelSeen = false;
        foreach (var (step, path) in steps)
        {
            string stepType = j.String(j.Required(step, "type", path), path + ".type");
            if (byteLevelSeen)
            {
                throw j.Error($"{path}: a {stepType} step after ByteLevel is not supported (ByteLevel must come last)");
            }
            switch (stepType)
            {
                case "ByteLevel":
                    byteLevelSeen = true;
                    d.AddPrefixSpace = j.Bool(step, "add_prefix_space", path, absent: true);
                    d.ByteLevelRegex = j.Bool(step, "use_regex", path, absent: true);
                    break;
                case "Split":
                    d.Splitters.Add(ReadSplit(j, step, path));
                    break;
                default:
                    throw j.Error($"{path}: unsupported pre-tokenizer \"{stepType}\" (supported: ByteLevel, Split, a Sequence of those)");
            }
        }
        if (!byteLevelSeen)
        {
            throw j.Error("pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
        }
    }

    private static PieceSplitter ReadSplit(TokenizerJson j, JsonElement step, string path)
    {
        string behavior = j.String(j.Required(step, "behavior", path), path + ".behavior");
        if (behavior != "Isolated")
        {
            throw j.Error($"{path}.behavior \"{behavior}\" is not supported (only Isolated)");
        }
        // With Isolated, matches and the gaps between them are all pieces, so "invert" changes nothing.
        j.Bool(step, "invert", path, absent: false);
        JsonElement pattern = j.Object(j.Required(step, "pattern", path), path + ".pattern");
        if (j.OptionalString(pattern, "Regex", path + ".pattern") is { } regex)
        {
            try
            {
                return PieceSplitter.ForRegex(regex);
            }
            catch (EngineException e)
            {
                throw j.Error($"{path}: {e.Message}");
            }
        }
        if (j.OptionalString(pattern, "String", path + ".pattern") is { Length: > 0 } literal)
        {
            return PieceSplitter.ForLiteral(literal);
        }
        throw j.Error($"{path}.pattern must be {{\"Regex\": ...}} or a non-empty {{\"String\": ...}}");
    }

    private static void ReadDecoder(TokenizerJson j, JsonElement? decoder, string path, Definition d)
    {
        if (decoder is not { } dec)
        {
            return; // treated as ByteLevel (or, with byte_fallback, as "▁" -> " " and <0xNN> -> byte)
        }
        j.Object(dec, path);
        string type = j.String(j.Required(dec, "type", path), path + ".type");
        if (d.ByteFallback && type != "Sequence")
        {
            ReadSentencePieceDecoder(j, dec, type, path, d);
            return;
        }

        switch (type)
        {
            case "ByteLevel":
                return;
            case "Sequence":
                int i = 0;
                foreach (JsonElement inner in j.Array(j.Required(dec, "decoders", path), path + ".decoders").EnumerateArray())
                {
                    ReadDecoder(j, inner, $"{path}.decoders[{i++}]", d);
                }
                return;
            default:
                throw j.Error($"{path}: unsupported decoder \"{type}\" (only ByteLevel)");
        }
    }

    /// <summary>Every merge's parts and result must be tokens; an empty table must not hide a vocabulary that needs one.</summary>
    private static void CheckMerges(TokenizerJson j, Definition d)
    {
        for (int i = 0; i < d.Merges.Count; i++)
        {
            var (a, b) = d.Merges[i];
            foreach (string part in new[] { a, b, a + b })
            {
                if (!d.Vocab.ContainsKey(part))
                {
                    throw j.Error($"unknown token in the tokenizer file: model.merges[{i}] (\"{a}\", \"{b}\") needs \"{part}\", which is not in model.vocab");
                }
            }
        }
        if (d.Merges.Count == 0)
        {
            var added = new HashSet<string>(d.Added.Select(t => t.Content), StringComparer.Ordinal);
            string? multi = d.Vocab.Keys.FirstOrDefault(t => t.Length > 1 && !added.Contains(t));
            if (multi is not null)
            {
                throw j.Error($"model.merges is empty or missing, but model.vocab has multi-character tokens such as \"{multi}\"; "
                    + "encoding without the merge table would emit one token per byte");
            }
        }
    }

    /// <summary>Ids index dense tables, so a stray huge id would allocate gigabytes: bound them.</summary>
    private static void CheckIdRange(TokenizerJson j, Definition d)
    {
        const int limit = 1 << 24;
        int count = d.Vocab.Count + d.Added.Count;
        foreach (int id in d.Vocab.Values.Concat(d.Added.Select(t => t.Id)))
        {
            if (id >= limit || id >= 4 * count + 1024)
            {
                throw j.Error($"token id {id} is far beyond the {count} tokens the file defines (ids must be dense)");
            }
        }
    }

    private static void ReadTokenizerConfig(TokenizerJson j, string json, Definition d)
    {
        using JsonDocument doc = j.Parse(json);
        JsonElement root = j.Object(doc.RootElement, "the root");
        d.BosToken = TokenName(j, root, "bos_token");
        d.EosToken = TokenName(j, root, "eos_token");
        d.PadToken = TokenName(j, root, "pad_token");
    }

    /// <summary>"bos_token": "text" or {"content": "text", ...} or null.</summary>
    private static string? TokenName(TokenizerJson j, JsonElement root, string key)
    {
        if (TokenizerJson.Optional(root, key) is not { } v)
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.Object ? j.String(j.Required(v, "content", key), key + ".content") : j.String(v, key);
    }
}
