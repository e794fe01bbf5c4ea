using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Tokenizers;
using Engine.Tests.Support;

namespace Engine.Tests.Tokenizers;

/// <summary>Fixture files and small tokenizer.json builders shared by the tokenizer tests.</summary>
internal static class TokenizerFixtures
{
    /// <summary>Where GPT-2's real tokenizer.json lives, relative to the folder above the repository.</summary>
    public const string Gpt2Relative = "shared/data/tokenizers/gpt2/tokenizer.json";

    private static readonly Lazy<BpeTokenizer> Gpt2Lazy = new(() => BpeTokenizer.FromFile(Gpt2Path()));
    private static readonly Lazy<BpeTokenizer> QwenLazy = new(() => BpeTokenizer.FromFile(Path("qwen2_style_tokenizer.json")));

    /// <summary>A file under Fixtures/tokenizers in the test output.</summary>
    public static string Path(string name) => System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", name);

    /// <summary>The repository root: the first folder above the test binaries that holds Engine.sln.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Engine.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Engine.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>
    /// GPT-2's tokenizer.json: &lt;repo&gt;/../shared/data/tokenizers/gpt2/tokenizer.json, or the same
    /// path under a folder further up (a git worktree sits one level deeper than the main
    /// checkout). Null when absent.
    /// </summary>
    public static string? FindGpt2()
    {
        for (var dir = new DirectoryInfo(RepoRoot()).Parent; dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, Gpt2Relative);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>The GPT-2 file, or a test failure that says where it was looked for.</summary>
    public static string Gpt2Path() => FindGpt2() ?? throw new FileNotFoundException(
        $"GPT-2's tokenizer.json is missing: expected {Gpt2Relative} next to the repository ({RepoRoot()}/../{Gpt2Relative}). "
        + "It is GPT-2's Hugging Face tokenizer file; the known-answer test needs it.");

    /// <summary>GPT-2's real tokenizer (loaded once).</summary>
    public static BpeTokenizer Gpt2 => Gpt2Lazy.Value;

    /// <summary>The Qwen2-style tokenizer built by the fixture generator (loaded once).</summary>
    public static BpeTokenizer QwenStyle => QwenLazy.Value;

    /// <summary>(text, ids) rows of a known-answers file.</summary>
    public static List<(string Text, int[] Ids)> KnownAnswers(string name)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path(name)));
        var rows = new List<(string, int[])>();
        foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            rows.Add((c.GetProperty("text").GetString()!, [.. c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())]));
        }
        return rows;
    }

    /// <summary>The 256 byte-level characters.</summary>
    public static IEnumerable<string> ByteChars() => Enumerable.Range(0, 256).Select(b => ByteLevel.ByteToChar((byte)b).ToString());

    /// <summary>Maps text to its byte-level spelling ("a b" -> "aĠb").</summary>
    public static string Spell(string text) => string.Concat(Encoding.UTF8.GetBytes(text).Select(b => ByteLevel.ByteToChar(b)));

    /// <summary>
    /// A small byte-level BPE tokenizer.json: the 256 byte characters (ids 0..255), then each
    /// merge's result in order, then any <paramref name="extraVocab"/>. Merges are given in
    /// plain text ("a b" = merge of "a" and "b"; "Ġ" spelled as a space is mapped).
    /// </summary>
    public static JsonObject TinyJson(
        IEnumerable<(string Left, string Right)> merges,
        bool pairs = true,
        IEnumerable<JsonObject>? added = null,
        JsonNode? normalizer = null,
        JsonNode? preTokenizer = null,
        bool ignoreMerges = false,
        IEnumerable<string>? extraVocab = null)
    {
        var vocab = new JsonObject();
        int next = 0;
        foreach (string c in ByteChars())
        {
            vocab[c] = next++;
        }
        var mergeArray = new JsonArray();
        foreach (var (left, right) in merges)
        {
            string l = Spell(left), r = Spell(right);
            if (!vocab.ContainsKey(l + r))
            {
                vocab[l + r] = next++;
            }
            mergeArray.Add(pairs ? new JsonArray(l, r) : (JsonNode)(l + " " + r));
        }
        foreach (string extra in extraVocab ?? [])
        {
            vocab[Spell(extra)] = next++;
        }
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray([.. (added ?? [])]),
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer ?? byteLevel,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["ignore_merges"] = ignoreMerges,
                ["vocab"] = vocab,
                ["merges"] = mergeArray,
            },
        };
    }

    /// <summary>An added_tokens entry.</summary>
    public static JsonObject Added(int id, string content, bool special = true, bool lstrip = false, bool rstrip = false,
        bool normalized = false, bool singleWord = false) => new()
        {
            ["id"] = id,
            ["content"] = content,
            ["single_word"] = singleWord,
            ["lstrip"] = lstrip,
            ["rstrip"] = rstrip,
            ["normalized"] = normalized,
            ["special"] = special,
        };

    /// <summary>Random text over code points from many scripts, incl. non-BMP, marks, controls and whitespace runs.</summary>
    public static string RandomText(Random rng, int maxLength)
    {
        int[][] ranges =
        [
            [0x20, 0x7E], [0x20, 0x7E], [0x20, 0x7E], [0x00, 0x1F], [0x7F, 0xFF], [0x100, 0x24F], [0x300, 0x36F],
            [0x370, 0x3FF], [0x400, 0x4FF], [0x590, 0x6FF], [0x900, 0x97F], [0xE00, 0xE7F], [0x1100, 0x11FF],
            [0x2000, 0x206F], [0x3000, 0x30FF], [0x4E00, 0x9FFF], [0xAC00, 0xD7A3], [0xFB00, 0xFFFD],
            [0x10000, 0x1034F], [0x1D400, 0x1D7FF], [0x1F300, 0x1FAFF], [0x20000, 0x2A6DF], [0xE0000, 0xE007F],
        ];
        string[] fragments = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "'s", "'LL", "e\u0301", "\u3000", "<|endoftext|>"];
        var sb = new StringBuilder();
        int n = rng.Next(maxLength + 1);
        for (int i = 0; i < n; i++)
        {
            if (rng.Next(6) == 0)
            {
                sb.Append(fragments[rng.Next(fragments.Length)]);
                continue;
            }
            int[] r = ranges[rng.Next(ranges.Length)];
            int cp = rng.Next(r[0], r[1] + 1);
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                cp = 'x';
            }
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    /// <summary>A uniformly random code point sequence (any plane, no surrogates).</summary>
    public static string RandomCodePoints(Random rng, int length)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < length; i++)
        {
            int cp;
            do
            {
                cp = rng.Next(0x110000);
            }
            while (cp is >= 0xD800 and <= 0xDFFF);
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }
}

/// <summary>A fact that needs GPT-2's real tokenizer.json next to the repository.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class Gpt2FileFactAttribute() : NeedsFactAttribute(
    TokenizerFixtures.FindGpt2() is not null, $"GPT-2's tokenizer.json not found at <repo>/../{TokenizerFixtures.Gpt2Relative}");
