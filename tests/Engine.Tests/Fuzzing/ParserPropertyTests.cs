using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using Engine.Core;
using Xunit.Abstractions;

namespace Engine.Tests.Fuzzing;

/// <summary>
/// Property tests (CsCheck) of every parser a user's file reaches: for any input, the parser loads
/// it or throws an <see cref="EngineException"/> with a message, never anything else. Inputs are the
/// committed seeds (fuzz/corpus, shared with the coverage-guided harness) mutated three ways: bytes
/// flipped, cut, repeated or spliced with JSON fragments; one JSON value replaced by a hostile one
/// (huge, negative, fractional, wrong type, deep); and random bytes. A failure prints CsCheck's seed
/// (rerun with that seed to reproduce) and the shrunk input.
/// </summary>
public sealed class ParserPropertyTests(ITestOutputHelper output)
{
    /// <summary>Inputs per generator and target (bounded so the whole class takes a few seconds; the harness under fuzz/ runs millions).</summary>
    private const int Iterations = 150;

    private static readonly string CorpusRoot = Path.Combine(AppContext.BaseDirectory, "FuzzCorpus");

    /// <summary>Fragments spliced into the bytes: JSON punctuation, extreme numbers, odd Unicode.</summary>
    private static readonly string[] Fragments =
    [
        "{", "}", "[", "]", "\"", ":", ",", "null", "true", "-1", "0", "1e309", "-1e309", "1.5", "9223372036854775807",
        "18446744073709551616", "NaN", "\"\\u0000\"", "\"\\ud800\"", "[[[[[[[[[[[[[[[[[[[[", "\u00e9", "\U0001F600", "\"F32\"",
        "\"data_offsets\"", "\"shape\"", "\"dtype\"", "\"vocab\"", "\"merges\"", "\"model\"",
    ];

    /// <summary>Values that replace one JSON value.</summary>
    private static readonly Func<JsonNode?>[] Hostile =
    [
        () => null, () => JsonValue.Create(-1), () => JsonValue.Create(0), () => JsonValue.Create(1.5), () => JsonValue.Create(long.MaxValue),
        () => JsonValue.Create(ulong.MaxValue), () => JsonValue.Create(1e300), () => JsonValue.Create(-2147483649L), () => JsonValue.Create(true),
        () => JsonValue.Create(""), () => JsonValue.Create("x"), () => JsonValue.Create("\u0000"), () => JsonValue.Create(new string('a', 5000)),
        () => new JsonArray(), () => new JsonObject(), () => new JsonArray(JsonValue.Create(1), JsonValue.Create("a"), null),
        () => new JsonObject { ["a"] = new JsonObject { ["b"] = new JsonArray(new JsonArray(new JsonArray())) } },
        () => new JsonArray(JsonValue.Create(1 << 30), JsonValue.Create(1 << 30), JsonValue.Create(1 << 30)),
    ];

    public static TheoryData<string> Targets() => new(ParserTargets.All.Keys);

    [Theory]
    [MemberData(nameof(Targets))]
    public void Byte_mutations_of_the_seeds_load_or_fail_with_an_engine_exception(string target)
    {
        byte[][] seeds = Seeds(target);
        Gen<byte[]> gen = Gen.Select(Gen.Int[0, seeds.Length - 1], Gen.Select(Gen.Int[0, 4], Gen.Int, Gen.Int[0, 64], Gen.Int[0, Fragments.Length - 1]).Array[1, 6],
            (s, edits) => Mutate(seeds[s], edits));
        gen.Sample(input => Check(target, input), iter: Iterations, threads: 1, print: Show, writeLine: output.WriteLine);
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Json_value_swaps_in_the_seeds_load_or_fail_with_an_engine_exception(string target)
    {
        byte[][] seeds = Seeds(target);
        Gen<byte[]> gen = Gen.Select(Gen.Int[0, seeds.Length - 1], Gen.Select(Gen.Int, Gen.Int[0, Hostile.Length - 1]).Array[1, 3],
            (s, swaps) => SwapJsonValues(target, seeds[s], swaps));
        gen.Sample(input => Check(target, input), iter: Iterations, threads: 1, print: Show, writeLine: output.WriteLine);
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Random_bytes_fail_with_an_engine_exception(string target) =>
        Gen.Byte.Array[0, 300].Sample(input => Check(target, input), iter: Iterations / 4, threads: 1, print: Show, writeLine: output.WriteLine);

    [Fact]
    public void Every_seed_loads()
    {
        foreach (string target in ParserTargets.All.Keys)
        {
            // Seeds named missing_* are there to start the fuzzer on an error path.
            foreach (string file in Directory.GetFiles(Path.Combine(CorpusRoot, target)).Where(f => !Path.GetFileName(f).StartsWith("missing", StringComparison.Ordinal)))
            {
                string? error = ParserTargets.Run(target, File.ReadAllBytes(file));
                Assert.True(error is null, $"{target}: the seed {Path.GetFileName(file)} does not load: {error}");
            }
        }
    }

    [Fact]
    public void A_catastrophically_backtracking_regex_is_an_engine_exception_not_a_hang()
    {
        JsonNode tokenizer = JsonNode.Parse(File.ReadAllText(Path.Combine(CorpusRoot, "tokenizer", "bpe_small.json")))!;
        tokenizer["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "(\\w+\\s?)+$" };
        var loaded = Engine.Tokenizers.BpeTokenizer.FromJson(tokenizer.ToJsonString());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(() => loaded.Encode(string.Concat(Enumerable.Repeat("ab cd ", 20)) + "!"));
        Assert.Contains("backtracking", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
    }

    private static void Check(string target, byte[] input)
    {
        try
        {
            ParserTargets.Run(target, input);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"{target}: {e.GetType().Name} instead of an EngineException: {e.Message}", e);
        }
    }

    private static byte[][] Seeds(string target) =>
        Directory.GetFiles(Path.Combine(CorpusRoot, target)).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray();

    /// <summary>Applies byte edits: 0 set a byte, 1 delete a run, 2 insert a fragment, 3 truncate, 4 repeat a run.</summary>
    private static byte[] Mutate(byte[] seed, (int Op, int At, int Len, int Fragment)[] edits)
    {
        var bytes = new List<byte>(seed);
        foreach (var (op, atRaw, len, fragment) in edits)
        {
            int at = bytes.Count == 0 ? 0 : (int)((uint)atRaw % (uint)bytes.Count);
            int run = Math.Min(len, bytes.Count - at);
            switch (op)
            {
                case 0 when bytes.Count > 0:
                    bytes[at] = (byte)(len * 4 + fragment);
                    break;
                case 1:
                    bytes.RemoveRange(at, run);
                    break;
                case 2:
                    bytes.InsertRange(at, Encoding.UTF8.GetBytes(Fragments[fragment]));
                    break;
                case 3:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 4:
                    bytes.InsertRange(at, bytes.GetRange(at, run));
                    break;
            }
        }

        return [.. bytes];
    }

    /// <summary>
    /// Replaces JSON values of the seed (picked by index in document order) with hostile ones. For a
    /// safetensors file the header is edited and the length prefix rewritten, the data kept.
    /// </summary>
    private static byte[] SwapJsonValues(string target, byte[] seed, (int Pick, int Value)[] swaps)
    {
        byte[] json = seed, data = [];
        if (target == "safetensors")
        {
            int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
            json = seed[8..(8 + n)];
            data = seed[(8 + n)..];
        }

        JsonNode root = JsonNode.Parse(json)!;
        foreach (var (pick, value) in swaps)
        {
            var slots = new List<(JsonNode Parent, object Key)>();
            Collect(root, slots);
            if (slots.Count == 0)
            {
                break;
            }

            var (parent, key) = slots[(int)((uint)pick % (uint)slots.Count)];
            JsonNode? replacement = Hostile[value]();
            if (key is string name)
            {
                parent.AsObject()[name] = replacement;
            }
            else
            {
                parent.AsArray()[(int)key] = replacement;
            }
        }

        byte[] edited = Encoding.UTF8.GetBytes(root.ToJsonString());
        if (target != "safetensors")
        {
            return edited;
        }

        var file = new byte[8 + edited.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)edited.Length);
        edited.CopyTo(file, 8);
        data.CopyTo(file, 8 + edited.Length);
        return file;
    }

    private static void Collect(JsonNode node, List<(JsonNode Parent, object Key)> slots)
    {
        if (node is JsonObject o)
        {
            foreach (var (name, child) in o)
            {
                slots.Add((o, name));
                if (child is not null)
                {
                    Collect(child, slots);
                }
            }
        }
        else if (node is JsonArray a)
        {
            // Long arrays (vocabularies, merges) would swamp the picks: only their first elements count.
            for (int i = 0; i < Math.Min(a.Count, 8); i++)
            {
                slots.Add((a, i));
                if (a[i] is { } child)
                {
                    Collect(child, slots);
                }
            }
        }
    }

    private static string Show(byte[] input) =>
        input.Length <= 2000 && Encoding.UTF8.GetString(input) is var s && !s.Contains('\uFFFD')
            ? JsonSerializer.Serialize(s)
            : $"{input.Length} bytes: {Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 600)))}";
}
