using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using EngineBpe = Engine.Tokenizers.BpeTokenizer;

// Microsoft.ML.Tokenizers' byte-level BPE against the engine's own, on the known-answer suites
// (tests/Engine.Tests/Fixtures/tokenizers) and on encode speed. Usage, from the repository root:
//   dotnet run --project benchmarks/Engine.TokenizerCompare -c Release [-- MEGABYTES]
// Prints one table row per tokenizer and implementation, and the first mismatches of each.
string root = Directory.GetCurrentDirectory();
int megabytes = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 4;
string fixtures = Path.Combine(root, "tests/Engine.Tests/Fixtures/tokenizers");
var suites = new (string Name, string Tokenizer, string Answers)[]
{
    ("GPT-2 (real file)", Path.Combine(root, "../shared/data/tokenizers/gpt2/tokenizer.json"), Path.Combine(fixtures, "gpt2_known_answers.json")),
    ("Qwen2-style", Path.Combine(fixtures, "qwen2_style_tokenizer.json"), Path.Combine(fixtures, "qwen2_style_known_answers.json")),
};
if (!File.Exists(suites[0].Tokenizer))
{
    suites[0].Tokenizer = "/work/shared/data/tokenizers/gpt2/tokenizer.json";
}

string text = LargeText(root, megabytes << 20);
long bytes = Encoding.UTF8.GetByteCount(text);
Console.WriteLine($"speed text: {bytes / 1e6:F1} MB of the repository's and the design notes' Markdown, repeated; {Environment.ProcessorCount} cores; one thread");
Console.WriteLine("| tokenizer | implementation | known answers passed | encode MB/s |");
Console.WriteLine("| --- | --- | --- | --- |");
foreach (var suite in suites)
{
    var cases = KnownAnswers(suite.Answers);
    EngineBpe engine = EngineBpe.FromFile(suite.Tokenizer);
    Tokenizer ml = MlFromTokenizerJson(suite.Tokenizer);
    Report(suite.Name, "engine", cases, t => engine.Encode(t), text, bytes);
    Report(suite.Name, "Microsoft.ML.Tokenizers 3.0.0", cases, t => ml.EncodeToIds(t, considerPreTokenization: true, considerNormalization: true).ToArray(), text, bytes);
}

return 0;

static void Report(string suite, string name, List<(string Text, int[] Ids)> cases, Func<string, int[]> encode, string text, long bytes)
{
    int passed = 0;
    var failures = new List<string>();
    foreach (var (t, ids) in cases)
    {
        int[] got;
        try
        {
            got = encode(t);
        }
        catch (Exception e)
        {
            failures.Add($"  {JsonSerializer.Serialize(t)}: {e.GetType().Name}: {e.Message}");
            continue;
        }

        if (got.AsSpan().SequenceEqual(ids))
        {
            passed++;
        }
        else
        {
            failures.Add($"  {JsonSerializer.Serialize(t)}: expected [{string.Join(",", ids)}], got [{string.Join(",", got)}]");
        }
    }

    encode(text); // warm-up (caches, JIT)
    var times = new List<double>();
    for (int i = 0; i < 3; i++)
    {
        long start = Stopwatch.GetTimestamp();
        encode(text);
        times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    Console.WriteLine($"| {suite} | {name} | {passed}/{cases.Count} | {bytes / 1e6 / times.Min():F1} |");
    foreach (string f in failures.Take(8))
    {
        Console.Error.WriteLine($"{suite}, {name}: mismatch{f}");
    }
}

static List<(string Text, int[] Ids)> KnownAnswers(string path)
{
    using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
    return doc.RootElement.GetProperty("cases").EnumerateArray()
        .Select(c => (c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()))
        .ToList();
}

// Maps a Hugging Face byte-level BPE tokenizer.json onto ML.Tokenizers' BpeTokenizer: vocabulary, merges,
// added tokens as special tokens, the Split regex (or GPT-2's ByteLevel regex) as a RegexPreTokenizer, NFC.
static Tokenizer MlFromTokenizerJson(string path)
{
    using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
    JsonElement root = doc.RootElement, model = root.GetProperty("model");
    var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => KeyValuePair.Create(p.Name, p.Value.GetInt32())).ToList();
    var merges = model.GetProperty("merges").EnumerateArray()
        .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : $"{m[0].GetString()} {m[1].GetString()}").ToList();
    var special = root.TryGetProperty("added_tokens", out JsonElement added)
        ? added.EnumerateArray().ToDictionary(a => a.GetProperty("content").GetString()!, a => a.GetProperty("id").GetInt32())
        : [];
    const string Gpt2Regex = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    string pattern = Gpt2Regex;
    JsonElement pre = root.GetProperty("pre_tokenizer");
    if (pre.GetProperty("type").GetString() == "Sequence")
    {
        foreach (JsonElement step in pre.GetProperty("pretokenizers").EnumerateArray())
        {
            if (step.GetProperty("type").GetString() == "Split")
            {
                pattern = step.GetProperty("pattern").GetProperty("Regex").GetString()!;
            }
        }
    }

    bool nfc = root.TryGetProperty("normalizer", out JsonElement norm) && norm.ValueKind == JsonValueKind.Object && norm.GetProperty("type").GetString() == "NFC";
    return BpeTokenizer.Create(new BpeOptions(vocab)
    {
        Merges = merges,
        ByteLevel = true,
        SpecialTokens = special,
        PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
        Normalizer = nfc ? new NfcNormalizer() : null,
    });
}

static string LargeText(string root, int chars)
{
    var files = Directory.GetFiles(root, "*.md", SearchOption.AllDirectories).Where(f => !f.Contains("/bin/") && !f.Contains("/obj/"))
        .Concat(Directory.Exists(Path.Combine(root, "../shared/spec")) ? Directory.GetFiles(Path.Combine(root, "../shared/spec"), "*.md") : [])
        .Order(StringComparer.Ordinal);
    string corpus = string.Join("\n\n", files.Select(File.ReadAllText));
    var sb = new StringBuilder(chars + corpus.Length);
    while (sb.Length < chars)
    {
        sb.Append(corpus).Append('\n');
    }

    return sb.ToString();
}

/// <summary>
/// Unicode NFC, as the Qwen tokenizer.json's normalizer: the engine's (string.Normalize leaves text as it
/// is under InvariantGlobalization, which the engine runs with).
/// </summary>
internal sealed class NfcNormalizer : Normalizer
{
    public override string Normalize(string original) => Engine.Tokenizers.Nfc.Normalize(original);

    public override string Normalize(ReadOnlySpan<char> original) => Engine.Tokenizers.Nfc.Normalize(original.ToString());
}
