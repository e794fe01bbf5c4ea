using System.Text.Json;
using Engine.Tokenizers;
using Xunit.Abstractions;

namespace Engine.Tests.Tokenizers;

/// <summary>
/// Token ids against an independent implementation: tests/fixtures/generate_tokenizer_fixtures.py
/// (OpenAI's encoder.py algorithm with the `regex` module, plus Hugging Face's added-token split
/// and NFC) on GPT-2's real tokenizer.json and on a Qwen2-style tokenizer.json it trains and writes.
/// </summary>
public sealed class KnownAnswerTests(ITestOutputHelper output)
{
    [Gpt2FileFact]
    public void Gpt2_real_tokenizer_matches_the_reference_encoder()
    {
        BpeTokenizer tok = TokenizerFixtures.Gpt2;
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(50000, tok.MergeCount);
        Assert.Equal([15496, 995], tok.Encode("Hello world"));
        AssertAll(tok, TokenizerFixtures.KnownAnswers("gpt2_known_answers.json"), nfc: false);
    }

    [Gpt2FileFact]
    public void Gpt2_special_token_and_eos()
    {
        BpeTokenizer tok = TokenizerFixtures.Gpt2;
        Assert.True(tok.TryGetSpecialTokenId("<|endoftext|>", out int eot));
        Assert.Equal(50256, eot);
        Assert.Equal(50256, tok.EosTokenId);
        Assert.True(tok.IsSpecialToken(50256));
        Assert.False(tok.IsSpecialToken(995));
        Assert.Equal("Ġworld", tok.IdToToken(995));
        Assert.Equal("<|endoftext|>", tok.Decode([50256]));
        Assert.Equal("a b", tok.Decode(tok.Encode("a<|endoftext|> b"), skipSpecialTokens: true));
    }

    [Fact]
    public void Qwen2_style_tokenizer_matches_the_reference_encoder()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        Assert.True(tok.NormalizesNfc);
        Assert.Equal(400, tok.MergeCount);
        AssertAll(tok, TokenizerFixtures.KnownAnswers("qwen2_style_known_answers.json"), nfc: true);
    }

    [Fact]
    public void Qwen2_style_special_tokens()
    {
        BpeTokenizer tok = TokenizerFixtures.QwenStyle;
        Assert.True(tok.TryGetSpecialTokenId("<|im_start|>", out int start));
        Assert.True(tok.TryGetSpecialTokenId("<|im_end|>", out int end));
        Assert.False(tok.TryGetSpecialTokenId("<tool_call>", out _)); // an added token, but not special
        Assert.True(tok.TryGetTokenId("<tool_call>", out int call));
        Assert.False(tok.IsSpecialToken(call));
        Assert.Equal([start], tok.Encode("<|im_start|>"));
        Assert.Equal("<|im_start|>hi<|im_end|>", tok.Decode(tok.Encode("<|im_start|>hi<|im_end|>")));
        Assert.Equal("hi<tool_call>", tok.Decode(tok.Encode("<|im_start|>hi<tool_call><|im_end|>"), skipSpecialTokens: true));
        Assert.True(tok.TryGetSpecialTokenId("<|endoftext|>", out int eot));
        Assert.Equal(eot, tok.EosTokenId);
        Assert.Null(tok.BosTokenId);
        Assert.NotEqual(end, eot);
    }

    private void AssertAll(BpeTokenizer tok, List<(string Text, int[] Ids)> cases, bool nfc)
    {
        Assert.True(cases.Count >= 30, $"only {cases.Count} cases");
        int failures = 0;
        foreach (var (text, ids) in cases)
        {
            int[] got = tok.Encode(text);
            if (!got.AsSpan().SequenceEqual(ids))
            {
                failures++;
                output.WriteLine($"MISMATCH {JsonSerializer.Serialize(text)}\n  expected [{string.Join(", ", ids)}]\n  got      [{string.Join(", ", got)}]");
            }
            Assert.Equal(nfc ? Nfc.Normalize(text) : text, tok.Decode(got));
        }
        Assert.Equal(0, failures);
        output.WriteLine($"{cases.Count} cases match");
    }
}
