using System.Text.Json;
using Engine.Tokenizers;

namespace Engine.Tests.Tokenizers;

/// <summary>
/// The engine's own NFC (used because string.Normalize does not compose under
/// InvariantGlobalization) against Python's unicodedata.normalize (fixture nfc_cases.json: every
/// code point with a canonical decomposition, precomposed and decomposed; Hangul; scrambled
/// combining-mark sequences; exclusions and singletons).
/// </summary>
public sealed class NfcTests
{
    [Fact]
    public void Matches_python_unicodedata_on_every_fixture_case()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(TokenizerFixtures.Path("nfc_cases.json")));
        Assert.Equal(Nfc.UnicodeVersion, doc.RootElement.GetProperty("unicode").GetString());
        int n = 0;
        foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string input = c[0].GetString()!, expected = c[1].GetString()!;
            Assert.Equal(expected, Nfc.Normalize(input));
            Assert.Equal(expected, Nfc.Normalize(expected));
            n += input.Split('|').Length;
        }
        Assert.True(n > 5000, $"only {n} strings");
    }

    [Theory]
    [InlineData("e\u0301", "\u00e9")]
    [InlineData("A\u030a", "\u00c5")]
    [InlineData("\u212b", "\u00c5")]                 // Angstrom sign: singleton decomposition
    [InlineData("\u1100\u1161\u11a8", "\uac01")]     // Hangul L V T
    [InlineData("\uac00\u11a8", "\uac01")]           // LV + T
    [InlineData("q\u0307\u0323", "q\u0323\u0307")]    // reordered by combining class, nothing composes
    [InlineData("\u0958", "\u0915\u093c")]           // composition exclusion
    [InlineData("\ufb01", "\ufb01")]                 // compatibility ligature: NFC keeps it
    [InlineData("\U0001d15e", "\U0001d157\U0001d165")] // excluded musical symbol, non-BMP
    [InlineData("abc", "abc")]
    [InlineData("", "")]
    public void Known_values(string input, string expected) => Assert.Equal(expected, Nfc.Normalize(input));

    [Fact]
    public void Ascii_and_nfc_text_come_back_as_the_same_instance()
    {
        const string text = "plain ASCII, Latin-1 caf\u00e9 and \u4e2d\u6587";
        Assert.Same(text, Nfc.Normalize(text));
    }

    [Fact]
    public void Is_idempotent_on_random_text_and_keeps_lone_surrogates()
    {
        var rng = new Random(11);
        for (int i = 0; i < 2000; i++)
        {
            string s = TokenizerFixtures.RandomText(rng, 30);
            string once = Nfc.Normalize(s);
            Assert.Equal(once, Nfc.Normalize(once));
        }
        Assert.Equal("a\ud800\u00e9", Nfc.Normalize("a\ud800e\u0301"));
    }
}
