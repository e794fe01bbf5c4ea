using System.Text;
using Engine.Core;
using Engine.Tokenizers;

namespace Engine.Tests.Tokenizers;

/// <summary>The character tokenizer for the built-in tasks: ids, special tokens, errors, save/load.</summary>
public sealed class CharTokenizerTests
{
    private const string Arithmetic = "0123456789+-*/=() ";

    [Fact]
    public void Ids_are_specials_then_the_alphabet_in_order()
    {
        var tok = new CharTokenizer(Arithmetic);
        Assert.Equal(3 + Arithmetic.Length, tok.VocabSize);
        Assert.Equal(0, tok.PadTokenId);
        Assert.Equal(1, tok.BosTokenId);
        Assert.Equal(2, tok.EosTokenId);
        Assert.Equal([3, 4, 13, 5], tok.Encode("01+2"));
        Assert.Equal("<bos>", tok.IdToToken(1));
        Assert.Equal("+", tok.IdToToken(13));
        Assert.True(tok.TryGetTokenId("=", out int eq));
        Assert.Equal(3 + Arithmetic.IndexOf('=', StringComparison.Ordinal), eq);
        Assert.False(tok.TryGetTokenId("12", out _));
    }

    [Fact]
    public void Encode_decode_round_trip_with_special_tokens_in_the_text()
    {
        var tok = new CharTokenizer(Arithmetic + "<>");
        string text = "<bos>12*(3+4)=84<eos><pad><pad>";
        int[] ids = tok.Encode(text);
        Assert.Equal(1, ids[0]);
        Assert.Equal([2, 0, 0], ids[^3..]);
        Assert.Equal(text, tok.Decode(ids));
        Assert.Equal("12*(3+4)=84", tok.Decode(ids, skipSpecialTokens: true));
        Assert.True(tok.IsSpecialToken(0));
        Assert.False(tok.IsSpecialToken(3));
        // '<' and '>' are ordinary characters when they do not spell a special token.
        Assert.Equal("<1>", tok.Decode(tok.Encode("<1>")));
        Assert.Equal(3, tok.Encode("<1>").Length);
    }

    [Fact]
    public void Unknown_characters_and_ids_fail_clearly()
    {
        var tok = new CharTokenizer(Arithmetic);
        var e = Assert.Throws<EngineException>(() => tok.Encode("12a"));
        Assert.Contains("'a' (U+0061) at index 2 is not in the alphabet", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<EngineException>(() => tok.Encode("1\t2"));
        Assert.Contains("U+0009", e.Message, StringComparison.Ordinal);
        Assert.Throws<EngineException>(() => tok.Decode([tok.VocabSize]));
        Assert.Throws<EngineException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void Bad_alphabets_and_special_tokens_are_rejected()
    {
        Assert.Contains("twice", Assert.Throws<EngineException>(() => new CharTokenizer("abca")).Message, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<EngineException>(() => new CharTokenizer("")).Message, StringComparison.Ordinal);
        Assert.Contains("twice", Assert.Throws<EngineException>(() => new CharTokenizer("ab", ["<x>", "<x>"])).Message, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<EngineException>(() => new CharTokenizer("ab", [""])).Message, StringComparison.Ordinal);
        Assert.Contains("both", Assert.Throws<EngineException>(() => new CharTokenizer("ab", ["a"])).Message, StringComparison.Ordinal);
        Assert.Contains("surrogate", Assert.Throws<EngineException>(() => new CharTokenizer("a\ud800")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Non_bmp_characters_are_single_tokens()
    {
        var tok = new CharTokenizer("ab\U0001D49C\U0001F600", ["<eos>"]);
        Assert.Equal(5, tok.VocabSize);
        Assert.Equal([1, 3, 4, 0], tok.Encode("a\U0001D49C\U0001F600<eos>"));
        Assert.Equal("\U0001D49Cb", tok.Decode([3, 2]));
        Assert.Null(tok.BosTokenId);
        Assert.Equal(0, tok.EosTokenId);
        var stream = tok.CreateStreamDecoder();
        Assert.Equal("\U0001F600", stream.Append(4));
        Assert.Equal("", stream.Flush());
    }

    [Fact]
    public void Saves_and_loads_through_the_tokenizer_loader()
    {
        string dir = Directory.CreateTempSubdirectory("chartok").FullName;
        try
        {
            var tok = new CharTokenizer("0123456789+=\"\\é\U0001F600", ["<pad>", "<bos>", "<eos>", "<sep>"]);
            tok.Save(Path.Combine(dir, TokenizerLoader.FileName));
            string json = File.ReadAllText(Path.Combine(dir, TokenizerLoader.FileName), Encoding.UTF8);
            Assert.Contains("\"type\": \"char\"", json, StringComparison.Ordinal);
            var loaded = Assert.IsType<CharTokenizer>(TokenizerLoader.Load(dir));
            Assert.Equal(tok.Alphabet, loaded.Alphabet);
            Assert.Equal(tok.SpecialTokens, loaded.SpecialTokens);
            string text = "<bos>1+1=2<sep>\"\\é\U0001F600<eos>";
            Assert.Equal(tok.Encode(text), loaded.Encode(text));
            Assert.Equal(tok.ToJson(), CharTokenizer.FromFile(Path.Combine(dir, TokenizerLoader.FileName)).ToJson());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("""{"type": "char", "alphabet": "aa"}""", "twice")]
    [InlineData("""{"type": "char"}""", "alphabet is missing")]
    [InlineData("""{"type": "char", "alphabet": 5}""", "alphabet must be a string")]
    [InlineData("""{"type": "char", "alphabet": "ab", "special": "<x>"}""", "special must be a JSON array")]
    [InlineData("""{"type": "char", "alphabet": "ab", "special": [1]}""", "special[0] must be a string")]
    [InlineData("""{"type": "char", "version": 2, "alphabet": "ab"}""", "unsupported character tokenizer version 2")]
    [InlineData("""{"type": "words", "alphabet": "ab"}""", "expected \"char\"")]
    [InlineData("""{"type": "char", "alphabet": "ab" """, "malformed JSON")]
    public void Bad_json_fails_clearly(string json, string expected)
    {
        var e = Assert.Throws<EngineException>(() => CharTokenizer.FromJson(json, "t.json"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("t.json: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Absent_special_list_means_the_defaults_and_an_empty_one_means_none()
    {
        var tok = CharTokenizer.FromJson("""{"type": "char", "alphabet": "xy", "special": []}""");
        Assert.Equal(2, tok.VocabSize);
        Assert.Null(tok.EosTokenId);
        var withDefaults = CharTokenizer.FromJson("""{"type": "char", "alphabet": "xy"}""");
        Assert.Equal(5, withDefaults.VocabSize);
        Assert.Equal(2, withDefaults.EosTokenId);
    }
}
