using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Tokenizers;
using Xunit.Abstractions;

namespace Engine.Tests.Tokenizers;

/// <summary>
/// Byte-level BPE: round trips on random Unicode, the merge loop against a plain OpenAI-style
/// BPE written here, both merge spellings, added tokens (longest match, lstrip/rstrip,
/// single_word, normalized or not), NFC, ignore_merges, add_prefix_space, streaming decode, and
/// every load error.
/// </summary>
public sealed class BpeTokenizerTests(ITestOutputHelper output)
{
    // ---------------------------------------------------------------------------------- round trips

    [Fact]
    public void Qwen2_style_round_trips_random_unicode_to_its_nfc()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        var rng = new Random(1);
        for (int i = 0; i < 1500; i++)
        {
            string s = i % 3 == 0 ? TokenizerFixtures.RandomCodePoints(rng, rng.Next(40)) : TokenizerFixtures.RandomText(rng, 60);
            Assert.Equal(Nfc.Normalize(s), tok.Decode(tok.Encode(s)));
        }
    }

    [Gpt2FileFact]
    public void Gpt2_round_trips_random_unicode_exactly()
    {
        BpeTokenizer tok = TokenizerFixtures.Gpt2;
        var rng = new Random(2);
        for (int i = 0; i < 1500; i++)
        {
            string s = i % 3 == 0 ? TokenizerFixtures.RandomCodePoints(rng, rng.Next(40)) : TokenizerFixtures.RandomText(rng, 60);
            Assert.Equal(s, tok.Decode(tok.Encode(s)));
        }
        foreach (string s in new[] { "\r\n\r\n", new string(' ', 100), "\t \t\n", "e\u0301\u0302", "\U0001F468\u200D\U0001F469\u200D\U0001F467", "\0" })
        {
            Assert.Equal(s, tok.Decode(tok.Encode(s)));
        }
    }

    [Fact]
    public void Lone_surrogates_encode_as_replacement_characters()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        Assert.Equal("a\uFFFDb", tok.Decode(tok.Encode("a\uD800b")));
    }

    // ---------------------------------------------------------------------- merge loop vs reference

    [Fact]
    public void Merges_match_a_plain_openai_style_bpe_on_random_text_qwen2_style()
    {
        CompareWithReferenceBpe(TokenizerFixtures.QwenStyle, TokenizerFixtures.Path("qwen2_style_tokenizer.json"),
            PieceSplitter.ForRegex(PieceSplitter.Qwen2Pattern), nfc: true, seed: 3);
    }

    [Gpt2FileFact]
    public void Merges_match_a_plain_openai_style_bpe_on_random_text_gpt2()
    {
        CompareWithReferenceBpe(TokenizerFixtures.Gpt2, TokenizerFixtures.Gpt2Path(), Gpt2Splitter.Instance, nfc: false, seed: 4);
    }

    private void CompareWithReferenceBpe(BpeTokenizer tok, string file, PieceSplitter splitter, bool nfc, int seed)
    {
        var reference = new ReferenceBpe(file);
        var rng = new Random(seed);
        var texts = new List<string>();
        for (int i = 0; i < 400; i++)
        {
            texts.Add(TokenizerFixtures.RandomText(rng, 50).Replace("<|endoftext|>", "", StringComparison.Ordinal));
        }
        // Long pieces: one letter run of a few thousand characters, and a repeated pattern.
        var sb = new StringBuilder();
        for (int i = 0; i < 1500; i++)
        {
            sb.Append("etaoinshrdlu"[rng.Next(12)]);
        }
        texts.Add(sb.ToString());
        texts.Add(string.Concat(Enumerable.Repeat("abab", 300)));
        texts.Add(string.Concat(Enumerable.Repeat("the", 400)));
        foreach (string raw in texts)
        {
            string text = nfc ? Nfc.Normalize(raw) : raw;
            var expected = new List<int>();
            foreach (string piece in PreTokenizerTests.Split(splitter, text))
            {
                expected.AddRange(reference.Encode(piece));
            }
            Assert.Equal(expected, tok.Encode(raw));
        }
        output.WriteLine($"{texts.Count} texts match the reference BPE");
    }

    /// <summary>OpenAI's encoder.py bpe(): merge every occurrence of the lowest-ranked bigram, repeat.</summary>
    private sealed class ReferenceBpe
    {
        private readonly Dictionary<string, int> _vocab = [];
        private readonly Dictionary<(string, string), int> _ranks = [];

        public ReferenceBpe(string file)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(file));
            JsonElement model = doc.RootElement.GetProperty("model");
            foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject())
            {
                _vocab[p.Name] = p.Value.GetInt32();
            }
            int rank = 0;
            foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
            {
                (string, string) pair = m.ValueKind == JsonValueKind.String
                    ? (m.GetString()!.Split(' ')[0], m.GetString()!.Split(' ')[1])
                    : (m[0].GetString()!, m[1].GetString()!);
                _ranks[pair] = rank++;
            }
        }

        public IEnumerable<int> Encode(string piece)
        {
            var word = TokenizerFixtures.Spell(piece).Select(c => c.ToString()).ToList();
            while (word.Count > 1)
            {
                (string, string)? best = null;
                int bestRank = int.MaxValue;
                for (int i = 0; i + 1 < word.Count; i++)
                {
                    if (_ranks.TryGetValue((word[i], word[i + 1]), out int r) && r < bestRank)
                    {
                        bestRank = r;
                        best = (word[i], word[i + 1]);
                    }
                }
                if (best is not { } b)
                {
                    break;
                }
                var merged = new List<string>(word.Count);
                for (int i = 0; i < word.Count; i++)
                {
                    if (i + 1 < word.Count && word[i] == b.Item1 && word[i + 1] == b.Item2)
                    {
                        merged.Add(b.Item1 + b.Item2);
                        i++;
                    }
                    else
                    {
                        merged.Add(word[i]);
                    }
                }
                word = merged;
            }
            return word.Select(t => _vocab[t]);
        }
    }

    // ------------------------------------------------------------------------------- merge formats

    [Fact]
    public void Merges_as_strings_and_as_pairs_give_identical_results()
    {
        JsonObject pairs = JsonNode.Parse(File.ReadAllText(TokenizerFixtures.Path("qwen2_style_tokenizer.json")))!.AsObject();
        JsonObject strings = pairs.DeepClone().AsObject();
        var merges = strings["model"]!["merges"]!.AsArray();
        for (int i = 0; i < merges.Count; i++)
        {
            merges[i] = merges[i]![0]!.GetValue<string>() + " " + merges[i]![1]!.GetValue<string>();
        }
        var a = BpeTokenizer.FromJson(pairs.ToJsonString());
        var b = BpeTokenizer.FromJson(strings.ToJsonString());
        Assert.Equal(400, b.MergeCount);
        foreach (var (text, ids) in TokenizerFixtures.KnownAnswers("qwen2_style_known_answers.json"))
        {
            Assert.Equal(ids, a.Encode(text));
            Assert.Equal(ids, b.Encode(text));
        }

        (string, string)[] tiny = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w")];
        var c = BpeTokenizer.FromJson(TokenizerFixtures.TinyJson(tiny, pairs: true).ToJsonString());
        var d = BpeTokenizer.FromJson(TokenizerFixtures.TinyJson(tiny, pairs: false).ToJsonString());
        Assert.Equal(c.Encode("hello world"), d.Encode("hello world"));
        Assert.Equal(["hello", "Ġw", "o", "r", "l", "d"], c.Encode("hello world").Select(c.IdToToken));
    }

    // ------------------------------------------------------------------------------- added tokens

    [Fact]
    public void Added_tokens_split_out_longest_first_and_leftmost()
    {
        var tok = Tiny(added: [TokenizerFixtures.Added(300, "<a>"), TokenizerFixtures.Added(301, "<a><b>"), TokenizerFixtures.Added(302, "<b>")]);
        Assert.Equal([301], tok.Encode("<a><b>"));
        Assert.Equal([.. tok.Encode("x"), 301, 302, 300], tok.Encode("x<a><b><b><a>"));
        Assert.Equal([.. tok.Encode("<a"), 302], tok.Encode("<a<b>"));
        Assert.Equal("x<a><b><b><a>", tok.Decode(tok.Encode("x<a><b><b><a>")));
    }

    [Fact]
    public void Lstrip_and_rstrip_swallow_adjacent_whitespace()
    {
        var tok = Tiny(added: [TokenizerFixtures.Added(300, "<mask>", lstrip: true), TokenizerFixtures.Added(301, "[R]", rstrip: true)]);
        Assert.Equal([.. tok.Encode("a"), 300, .. tok.Encode("b")], tok.Encode("a  \t<mask>b"));
        Assert.Equal([.. tok.Encode("x"), 301, .. tok.Encode("y ")], tok.Encode("x[R] \n y "));
        // lstrip does not reach back past the previous added token.
        Assert.Equal([301, 300], tok.Encode("[R]  <mask>"));
        Assert.Equal([300], tok.Encode("   <mask>"));
    }

    [Fact]
    public void Single_word_tokens_only_match_on_their_own()
    {
        var tok = Tiny(added: [TokenizerFixtures.Added(300, "sw", singleWord: true, special: false)]);
        Assert.Equal([.. tok.Encode("a "), 300, .. tok.Encode(" b")], tok.Encode("a sw b"));
        Assert.Equal([300, .. tok.Encode(".")], tok.Encode("sw."));
        Assert.DoesNotContain(300, tok.Encode("answer"));
        Assert.DoesNotContain(300, tok.Encode("swim"));
        Assert.DoesNotContain(300, tok.Encode("_sw"));
        Assert.Equal("answer", tok.Decode(tok.Encode("answer")));
    }

    [Theory]
    // Cases from the reference's own unit tests (tokenizers/src/tokenizer/added_vocabulary.rs).
    [InlineData("<mask> My name <mask> A<mask> <mask>ony <mask>", false, false, "[<mask>]| My name |[<mask>]| A<mask> <mask>ony |[<mask>]")]
    [InlineData("<mask>, <mask>- \u25cc\u0330<mask>", false, false, "[<mask>]|, |[<mask>]|- \u25cc\u0330<mask>")]
    [InlineData("Hi <mask> there\t<mask>\t<mask>\u2000", true, true, "Hi|[ <mask> ]|there|[\t<mask>\t]|[<mask>\u2000]")]
    public void Single_word_and_strip_options_split_like_the_reference(string text, bool lstrip, bool rstrip, string expected)
    {
        var token = new AddedToken(7, "<mask>", Special: false, lstrip, rstrip, Normalized: false, SingleWord: true);
        var matcher = new AddedTokenMatcher([token], t => t.Content);
        var segments = new List<TextSegment>();
        matcher.Split(text, 0, text.Length, segments);
        string shown = string.Join("|", segments.Select(s =>
        {
            string part = text.Substring(s.Start, s.Length);
            return s.TokenId >= 0 ? $"[{part}]" : part;
        }));
        Assert.Equal(expected, shown);
    }

    [Fact]
    public void Normalized_added_tokens_match_after_nfc_and_raw_ones_before()
    {
        var nfc = new JsonObject { ["type"] = "NFC" };
        var tok = Tiny(normalizer: nfc, added:
        [
            TokenizerFixtures.Added(300, "caf\u00e9", special: false, normalized: true),
            TokenizerFixtures.Added(301, "A\u030a", special: true, normalized: false),
        ]);
        Assert.Equal([300], tok.Encode("cafe\u0301"));     // matched in the normalized text
        Assert.Equal([300], tok.Encode("caf\u00e9"));
        Assert.Equal([301], tok.Encode("A\u030a"));        // matched in the raw text, before NFC would compose it
        Assert.DoesNotContain(301, tok.Encode("\u00c5"));
        Assert.Equal("\u00c5", tok.Decode(tok.Encode("\u00c5")));
    }

    [Fact]
    public void Nfc_normalizer_composes_before_encoding()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        Assert.Equal(tok.Encode("Caf\u00e9 r\u00e9sum\u00e9"), tok.Encode("Cafe\u0301 re\u0301sume\u0301"));
        Assert.Equal("Caf\u00e9", tok.Decode(tok.Encode("Cafe\u0301")));
        Assert.Equal(tok.Encode("\uac01"), tok.Encode("\u1100\u1161\u11a8"));
        var sequence = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "NFC" }) };
        Assert.True(Tiny(normalizer: sequence).NormalizesNfc);
        Assert.False(Tiny().NormalizesNfc);
        Assert.Equal("e\u0301", Tiny().Decode(Tiny().Encode("e\u0301")));
    }

    [Fact]
    public void Ignore_merges_emits_a_whole_piece_found_in_the_vocab()
    {
        (string, string)[] merges = [("b", "c"), ("a", "b")];
        var plain = BpeTokenizer.FromJson(TokenizerFixtures.TinyJson(merges, extraVocab: ["abc"]).ToJsonString());
        var ignoring = BpeTokenizer.FromJson(TokenizerFixtures.TinyJson(merges, extraVocab: ["abc"], ignoreMerges: true).ToJsonString());
        Assert.Equal(["a", "bc"], plain.Encode("abc").Select(plain.IdToToken));
        Assert.Equal(["abc"], ignoring.Encode("abc").Select(ignoring.IdToToken));
        Assert.Equal(["a", "bc", "d"], ignoring.Encode("abcd").Select(ignoring.IdToToken));
    }

    [Fact]
    public void Add_prefix_space_prepends_a_space_to_each_segment()
    {
        var pre = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["use_regex"] = true };
        var tok = Tiny(preTokenizer: pre, added: [TokenizerFixtures.Added(300, "<s>")]);
        var plain = Tiny();
        Assert.Equal(plain.Encode(" hi there"), tok.Encode("hi there"));
        Assert.Equal(plain.Encode(" hi"), tok.Encode(" hi"));
        Assert.Equal([300, .. plain.Encode(" hi")], tok.Encode("<s>hi"));
    }

    [Fact]
    public void Split_then_bytelevel_without_regex_uses_the_split_only()
    {
        var pre = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"\d+" }, ["behavior"] = "Isolated", ["invert"] = false },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false }),
        };
        var tok = Tiny(preTokenizer: pre);
        // Only the digit split applies: "hello world" is one piece.
        Assert.Equal(["hello", "Ġw", "o", "r", "l", "d", "1", "2"], tok.Encode("hello world12").Select(tok.IdToToken));
    }

    // --------------------------------------------------------------------------------- decoding

    [Gpt2FileFact]
    public void Stream_decoder_never_emits_partial_characters_and_matches_decode()
    {
        BpeTokenizer tok = TokenizerFixtures.Gpt2;
        string text = "emoji 😀😃 CJK 中文 math 𝒜 Ελληνικά e\u0301 🇳🇿";
        int[] ids = tok.Encode(text);
        Assert.Contains(ids, id => tok.Decode([id]).Contains('\uFFFD')); // some tokens really are partial characters
        TokenStreamDecoder stream = tok.CreateStreamDecoder();
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string piece = stream.Append(id);
            Assert.DoesNotContain('\uFFFD', piece);
            sb.Append(piece);
        }
        sb.Append(stream.Flush());
        Assert.Equal(text, sb.ToString());
    }

    [Fact]
    public void Stream_decoder_equals_decode_on_random_ids()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        var rng = new Random(5);
        for (int n = 0; n < 500; n++)
        {
            int[] ids = [.. Enumerable.Range(0, rng.Next(1, 20)).Select(_ => rng.Next(tok.VocabSize))];
            bool skip = n % 2 == 0;
            TokenStreamDecoder stream = tok.CreateStreamDecoder(skip);
            var sb = new StringBuilder();
            foreach (int id in ids)
            {
                sb.Append(stream.Append(id));
            }
            sb.Append(stream.Flush());
            Assert.Equal(tok.Decode(ids, skip), sb.ToString());
        }
        // A character cut off at the end becomes U+FFFD only at Flush.
        int[] emoji = tok.Encode("🦀");
        Assert.True(emoji.Length >= 2);
        TokenStreamDecoder s = tok.CreateStreamDecoder();
        Assert.Equal("", s.Append(emoji.AsSpan(0, emoji.Length - 1)));
        Assert.Equal("\uFFFD", s.Flush());
        Assert.Equal("\uFFFD", tok.Decode(emoji.AsSpan(0, emoji.Length - 1)));
    }

    [Fact]
    public void Token_lookups()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        int[] ids = tok.Encode("Hello world");
        Assert.Equal("Hello world", string.Concat(ids.Select(id => tok.Decode([id]))));
        Assert.True(tok.TryGetTokenId(tok.IdToToken(ids[^1]), out int back));
        Assert.Equal(ids[^1], back);
        Assert.False(tok.TryGetTokenId("no such token", out _));
        Assert.Throws<EngineException>(() => tok.Decode([tok.VocabSize]));
        Assert.Throws<EngineException>(() => tok.Decode([-1]));
        Assert.Throws<EngineException>(() => tok.IdToToken(tok.VocabSize));

        var holes = Tiny(added: [TokenizerFixtures.Added(1000, "<far>")]);
        Assert.Equal(1001, holes.VocabSize);
        Assert.Equal([1000], holes.Encode("<far>"));
        var e = Assert.Throws<EngineException>(() => holes.Decode([999]));
        Assert.Contains("not assigned", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokenizer_config_beside_the_file_names_bos_eos_pad()
    {
        string dir = Directory.CreateTempSubdirectory("tok").FullName;
        try
        {
            File.Copy(TokenizerFixtures.Path("qwen2_style_tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                """{"bos_token": null, "eos_token": {"content": "<|im_end|>", "special": true}, "pad_token": "<|endoftext|>"}""");
            var tok = (BpeTokenizer)TokenizerLoader.Load(dir);
            Assert.True(tok.TryGetSpecialTokenId("<|im_end|>", out int imEnd));
            Assert.True(tok.TryGetSpecialTokenId("<|endoftext|>", out int eot));
            Assert.Equal(imEnd, tok.EosTokenId);
            Assert.Equal(eot, tok.PadTokenId);
            Assert.Null(tok.BosTokenId);

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"eos_token": "<|nope|>"}""");
            var e = Assert.Throws<EngineException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("<|nope|>", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // ---------------------------------------------------------------------------- speed and threads

    [Fact]
    public async Task Encodes_concurrently_with_the_same_results()
    {
        BpeTokenizer tok = BpeTokenizer.FromFile(TokenizerFixtures.Path("qwen2_style_tokenizer.json"));
        var rng = new Random(6);
        string[] texts = [.. Enumerable.Range(0, 400).Select(_ => TokenizerFixtures.RandomText(rng, 80))];
        BpeTokenizer fresh = BpeTokenizer.FromFile(TokenizerFixtures.Path("qwen2_style_tokenizer.json"));
        int[][] serial = [.. texts.Select(fresh.Encode)];
        Task<int[][]>[] tasks = [.. Enumerable.Range(0, 4).Select(k => Task.Run(() => texts.Select(tok.Encode).ToArray()))];
        foreach (int[][] result in await Task.WhenAll(tasks))
        {
            for (int i = 0; i < texts.Length; i++)
            {
                Assert.Equal(serial[i], result[i]);
            }
        }
        Assert.InRange(tok.CachedPieces, 1, 1 << 16);
    }

    [Fact]
    public void Long_texts_and_pathological_pieces_encode_quickly_and_round_trip()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        string paragraph = string.Concat(TokenizerFixtures.KnownAnswers("qwen2_style_known_answers.json").Select(c => c.Text));
        var sb = new StringBuilder();
        while (sb.Length < 300_000)
        {
            sb.Append(paragraph);
        }
        string big = sb.ToString();
        tok.Encode(big[..10_000]); // warm up
        var watch = Stopwatch.StartNew();
        int[] ids = tok.Encode(big);
        double seconds = watch.Elapsed.TotalSeconds;
        Assert.Equal(Nfc.Normalize(big), tok.Decode(ids));

        var rng = new Random(8);
        string letters = string.Concat(Enumerable.Range(0, 300_000).Select(_ => "etaoinshrdlu"[rng.Next(12)]));
        watch.Restart();
        int[] longIds = tok.Encode(letters); // one 300k-character piece
        double longSeconds = watch.Elapsed.TotalSeconds;
        Assert.Equal(letters, tok.Decode(longIds));
        output.WriteLine($"mixed text: {big.Length / 1e6 / seconds:F1} M chars/s ({ids.Length} tokens in {seconds * 1e3:F0} ms); "
            + $"one 300k-letter piece: {longSeconds * 1e3:F0} ms ({longIds.Length} tokens)");
    }

    [Gpt2FileFact]
    public void Gpt2_encodes_a_large_mixed_text_and_reports_throughput()
    {
        BpeTokenizer tok = BpeTokenizer.FromFile(TokenizerFixtures.Gpt2Path()); // own instance: cold cache
        string paragraph = string.Concat(TokenizerFixtures.KnownAnswers("gpt2_known_answers.json").Select(c => c.Text));
        var sb = new StringBuilder();
        while (sb.Length < 1_000_000)
        {
            sb.Append(paragraph);
        }
        string big = sb.ToString();
        for (int i = 0; i < 3; i++)
        {
            TokenizerFixtures.Gpt2.Encode(big[..100_000]); // JIT warm-up on another instance; tok's cache stays cold
            Thread.Sleep(100);
        }
        var watch = Stopwatch.StartNew();
        int[] cold = tok.Encode(big);
        double coldSeconds = watch.Elapsed.TotalSeconds;
        watch.Restart();
        int[] warm = tok.Encode(big);
        double warmSeconds = watch.Elapsed.TotalSeconds;
        Assert.Equal(cold, warm);
        watch.Restart();
        string back = tok.Decode(warm);
        double decodeSeconds = watch.Elapsed.TotalSeconds;
        Assert.Equal(big, back);
        output.WriteLine($"GPT-2, {big.Length / 1e6:F1} M chars -> {warm.Length} tokens: encode {big.Length / 1e6 / coldSeconds:F1} M chars/s cold, "
            + $"{big.Length / 1e6 / warmSeconds:F1} M chars/s warm; decode {warm.Length / 1e6 / decodeSeconds:F1} M tokens/s");
    }

    // ---------------------------------------------------------------------------------- errors

    public static TheoryData<string, string> BadFiles => new()
    {
        { "{ not json", "malformed JSON" },
        { "[1, 2]", "must be a JSON object" },
        { "{}", "model is missing" },
        { """{"model": {"type": "WordPiece", "vocab": {"a": 0}}}""", "unsupported tokenizer model type \"WordPiece\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a c"]}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "unknown token in the tokenizer file" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "unknown token in the tokenizer file: model.merges[0] (\"a\", \"b\") needs \"ab\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}""", "duplicate id" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}""", "the token \"a\" twice" },
        { """{"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}""", "non-negative" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "model.merges is empty or missing" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "model.merges is empty or missing" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b c"]}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "not two tokens separated by one space" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a"]]}, "pre_tokenizer": {"type": "ByteLevel"}}""",
            "must be a string \"a b\" or a pair" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "pre_tokenizer": {"type": "ByteLevel"}}""", "byte_fallback" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "dropout": 0.1}, "pre_tokenizer": {"type": "ByteLevel"}}""", "dropout" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "unk_token": "<unk>"}, "pre_tokenizer": {"type": "ByteLevel"}}""", "unk_token" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "continuing_subword_prefix": "##"}, "pre_tokenizer": {"type": "ByteLevel"}}""", "continuing_subword_prefix" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}}""", "pre_tokenizer is missing" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Metaspace"}}""", "unsupported pre-tokenizer \"Metaspace\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Isolated"}]}}""",
            "no ByteLevel step" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Removed"}, {"type": "ByteLevel"}]}}""",
            "behavior \"Removed\" is not supported" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"}, {"type": "ByteLevel"}]}}""",
            "not supported by .NET's Regex" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}, "normalizer": {"type": "NFKC"}}""", "unsupported normalizer \"NFKC\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "WordPiece"}}""", "unsupported decoder \"WordPiece\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 5, "content": "<x>"}, {"id": 5, "content": "<y>"}]}""",
            "duplicate id" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 5, "content": ""}]}""", "content is empty" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 5, "content": "<x>", "special": "yes"}]}""",
            "special must be true or false" },
        { """{"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "ByteLevel"}}""", "model.vocab is empty" },
        { """{"model": {"type": "BPE", "vocab": {"a": 2000000000}}, "pre_tokenizer": {"type": "ByteLevel"}}""", "ids must be dense" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_files_fail_with_a_clear_message(string json, string expected)
    {
        var e = Assert.Throws<EngineException>(() => BpeTokenizer.FromJson(json, source: "bad.json"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("bad.json: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_and_missing_byte_tokens_fail_clearly()
    {
        var e = Assert.Throws<EngineException>(() => BpeTokenizer.FromFile("/nonexistent/tokenizer.json"));
        Assert.Contains("cannot read tokenizer file", e.Message, StringComparison.Ordinal);

        var partial = BpeTokenizer.FromJson("""{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}}""");
        Assert.Equal([2, 0], partial.Encode("aba"));
        var e2 = Assert.Throws<EngineException>(() => partial.Encode("abc"));
        Assert.Contains("byte 0x63", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Loader_rejects_files_that_are_no_tokenizer()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """{"vocab_size": 3}""");
            var e = Assert.Throws<EngineException>(() => TokenizerLoader.Load(file));
            Assert.Contains("not a recognised tokenizer file", e.Message, StringComparison.Ordinal);
            Assert.IsType<BpeTokenizer>(TokenizerLoader.Load(TokenizerFixtures.Path("qwen2_style_tokenizer.json")));
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static BpeTokenizer Tiny(IEnumerable<JsonObject>? added = null, JsonNode? normalizer = null, JsonNode? preTokenizer = null)
    {
        (string, string)[] merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("a", "n"), ("s", "w")];
        return BpeTokenizer.FromJson(TokenizerFixtures.TinyJson(merges, added: added, normalizer: normalizer, preTokenizer: preTokenizer).ToJsonString());
    }
}
