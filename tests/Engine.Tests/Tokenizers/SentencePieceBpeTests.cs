using System.Text;
using System.Text.Json;
using Engine.Core;
using Engine.Tokenizers;

namespace Engine.Tests.Tokenizers;

/// <summary>
/// SentencePiece-style BPE (byte_fallback; Llama-2 / Mistral tokenizer.json layouts) against known answers from
/// Tokenizers.js, an independent encoder (Fixtures/tokenizers/sentencepiece: make_fixture.py built the two
/// tokenizers, make_known_answers.mjs the answers): ids, and the decoded text with and without special tokens.
/// </summary>
public sealed class SentencePieceBpeTests
{
    public static TheoryData<string> Layouts => ["sp_legacy", "sp_metaspace"];

    private static string FixturePath(string name) => TokenizerFixtures.Path(Path.Combine("sentencepiece", name));

    private static List<(string Text, int[] Ids, string Decoded, string DecodedSkipSpecial)> Cases(string layout)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(FixturePath(layout + "_known_answers.json")));
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => (
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("decoded").GetString()!,
            c.GetProperty("decoded_skip_special").GetString()!))];
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Encodes_and_decodes_as_the_reference(string layout)
    {
        BpeTokenizer tokenizer = BpeTokenizer.FromFile(FixturePath(layout + "_tokenizer.json"));
        Assert.True(tokenizer.ByteFallback);
        var failures = new List<string>();
        var cases = Cases(layout);
        foreach (var (text, ids, decoded, decodedSkip) in cases)
        {
            int[] got = tokenizer.Encode(text);
            if (!got.SequenceEqual(ids))
            {
                failures.Add($"encode {JsonSerializer.Serialize(text)}: [{string.Join(",", got)}], expected [{string.Join(",", ids)}]");
            }

            if (tokenizer.Decode(ids) != decoded)
            {
                failures.Add($"decode {JsonSerializer.Serialize(text)}: {JsonSerializer.Serialize(tokenizer.Decode(ids))}, expected {JsonSerializer.Serialize(decoded)}");
            }

            if (tokenizer.Decode(ids, skipSpecialTokens: true) != decodedSkip)
            {
                failures.Add($"decode (skip special) {JsonSerializer.Serialize(text)}: {JsonSerializer.Serialize(tokenizer.Decode(ids, true))}, expected {JsonSerializer.Serialize(decodedSkip)}");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {3 * cases.Count} answers differ:\n" + string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Streaming_decode_adds_up_to_the_whole_decode(string layout)
    {
        BpeTokenizer tokenizer = BpeTokenizer.FromFile(FixturePath(layout + "_tokenizer.json"));
        foreach (var (text, ids, _, decodedSkip) in Cases(layout))
        {
            TokenStreamDecoder stream = tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
            var sb = new StringBuilder();
            foreach (int id in ids)
            {
                sb.Append(stream.Append(id));
            }

            sb.Append(stream.Flush());
            Assert.Equal(decodedSkip, sb.ToString());
        }
    }

    [Fact]
    public void Characters_without_a_token_fall_back_to_byte_tokens()
    {
        BpeTokenizer tokenizer = BpeTokenizer.FromFile(FixturePath("sp_legacy_tokenizer.json"));
        // 'z' is left out of the fixture's vocabulary on purpose: it must become <0x7A>, and "🎉" its four UTF-8 bytes.
        Assert.True(tokenizer.TryGetTokenId("<0x7A>", out int z));
        Assert.Contains(z, tokenizer.Encode("jazz"));
        int[] party = tokenizer.Encode("🎉");
        Assert.Equal(["\u2581", "<0xF0>", "<0x9F>", "<0x8E>", "<0x89>"], party.Select(tokenizer.IdToToken));
        Assert.Equal("🎉", tokenizer.Decode(party));
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "pre_tokenizer": {"type": "Whitespace"}}""", "not supported with byte_fallback" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "pre_tokenizer": {"type": "Metaspace", "prepend_scheme": "sometimes"}}""", "prepend_scheme \"sometimes\"" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "normalizer": {"type": "Replace", "pattern": {"Regex": " +"}, "content": "x"}}""", "regex replacements" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "decoder": {"type": "Strip", "content": "x", "start": 1, "stop": 0}}""", "Strip of leading spaces" },
        { """{"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": true}, "decoder": {"type": "Metaspace"}}""", "unsupported decoder \"Metaspace\"" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Unsupported_sentencepiece_settings_fail_with_a_clear_message(string json, string expected)
    {
        var e = Assert.Throws<EngineException>(() => BpeTokenizer.FromJson(json, source: "bad.json"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
