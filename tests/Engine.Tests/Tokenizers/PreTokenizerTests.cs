using System.Text;
using System.Text.Json;
using Engine.Tokenizers;
using Xunit.Abstractions;

namespace Engine.Tests.Tokenizers;

/// <summary>
/// The hand-written GPT-2 / Qwen2 / Llama 3 pre-tokenizers (scanners over code points) against
/// the `regex` module's splits of random strings (fixture pretokenize_cases.json), which include
/// letters, digits and emoji outside the BMP; and against .NET's Regex on BMP-only text, where
/// .NET's per-UTF-16-unit matching is exact.
/// </summary>
public sealed class PreTokenizerTests(ITestOutputHelper output)
{
    public static TheoryData<string> Patterns => ["gpt2", "qwen2", "llama3"];

    [Theory]
    [MemberData(nameof(Patterns))]
    public void Scanner_splits_exactly_like_the_reference_including_non_bmp(string name)
    {
        var (pattern, cases) = Load(name);
        PieceSplitter scanner = PieceSplitter.ForRegex(pattern);
        Assert.IsNotType<RegexSplitter>(scanner);
        int nonBmp = 0;
        foreach (var (text, expected) in cases)
        {
            Assert.Equal(expected, Split(scanner, text));
            nonBmp += text.Any(char.IsSurrogate) ? 1 : 0;
        }
        Assert.True(nonBmp > 100, $"only {nonBmp} cases with characters outside the BMP");
        output.WriteLine($"{name}: {cases.Count} cases ({nonBmp} with non-BMP characters) split like the reference");
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void Dotnet_regex_alone_would_split_non_bmp_text_differently(string name)
    {
        // Why the scanners exist: the same pattern on .NET's Regex gets surrogate pairs wrong.
        var (pattern, cases) = Load(name);
        var regex = new RegexSplitter(pattern, literal: false);
        int wrong = cases.Count(c => !Split(regex, c.Text).SequenceEqual(c.Pieces));
        int wrongBmp = cases.Count(c => !c.Text.Any(char.IsSurrogate) && !Split(regex, c.Text).SequenceEqual(c.Pieces));
        output.WriteLine($"{name}: .NET Regex differs from the reference on {wrong} of {cases.Count} cases, {wrongBmp} of them BMP-only");
        Assert.True(wrong > 0);
        Assert.Equal(0, wrongBmp);
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void Scanner_equals_dotnet_regex_on_random_bmp_text(string name)
    {
        var (pattern, _) = Load(name);
        PieceSplitter scanner = PieceSplitter.ForRegex(pattern);
        var regex = new RegexSplitter(pattern, literal: false);
        string[] pool =
        [
            "a", "Z", "é", "ß", "λ", "Ж", "中", "ا", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2028", "\u3000", "\u000b",
            "'", "'s", "'S", "'T", "'re", "'RE", "'Ve", "'ll", "'D", "'m", "'x", "’", "0", "7", "\u0663", "\u00bd", "\u2167",
            ".", ",", "!", "-", "_", "#", "\"", "\u0301", "\u0903", "\u200d", "\ufe0f", "\u0000", "\u001f", "\u007f", "\uFFFD",
        ];
        var rng = new Random(7);
        for (int n = 0; n < 3000; n++)
        {
            var sb = new StringBuilder();
            int len = rng.Next(1, 24);
            for (int i = 0; i < len; i++)
            {
                if (rng.Next(5) == 0)
                {
                    int cp = rng.Next(0x20, 0xFFFE);
                    sb.Append(char.IsSurrogate((char)cp) ? 'q' : (char)cp);
                }
                else
                {
                    sb.Append(pool[rng.Next(pool.Length)]);
                }
            }
            string text = sb.ToString();
            Assert.Equal(Split(regex, text), Split(scanner, text));
        }
    }

    [Fact]
    public void Qwen2_contractions_are_case_insensitive_and_digits_single()
    {
        PieceSplitter qwen = PieceSplitter.ForRegex(PieceSplitter.Qwen2Pattern);
        Assert.Equal(["I", "'M", " OK", "'S", "\n\n", "1", "2", "3"], Split(qwen, "I'M OK'S\n\n123"));
        PieceSplitter llama = PieceSplitter.ForRegex(PieceSplitter.Llama3Pattern);
        Assert.Equal(["123", "45", " x"], Split(llama, "12345 x"));
        Assert.Equal(["I", "'", "M"], Split(Gpt2Splitter.Instance, "I'M")); // GPT-2's contractions are lower-case only
    }

    [Fact]
    public void Unknown_pattern_falls_back_to_dotnet_regex_and_literal_split_isolates()
    {
        Assert.IsType<RegexSplitter>(PieceSplitter.ForRegex(@"\d+"));
        Assert.Equal(["ab", "12", "cd", "3"], Split(PieceSplitter.ForRegex(@"\d+"), "ab12cd3"));
        Assert.Equal(["a", "--", "b", "--", "--"], Split(PieceSplitter.ForLiteral("--"), "a--b----"));
    }

    internal static List<string> Split(PieceSplitter splitter, string text)
    {
        var pieces = new List<TextPiece>();
        splitter.Split(text, 0, text.Length, pieces);
        return [.. pieces.Select(p => p.Span.ToString())];
    }

    private static (string Pattern, List<(string Text, List<string> Pieces)> Cases) Load(string name)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(TokenizerFixtures.Path("pretokenize_cases.json")));
        JsonElement p = doc.RootElement.GetProperty("patterns").GetProperty(name);
        var cases = new List<(string, List<string>)>();
        foreach (JsonElement c in p.GetProperty("cases").EnumerateArray())
        {
            cases.Add((c[0].GetString()!, [.. c[1].EnumerateArray().Select(e => e.GetString()!)]));
        }
        return (p.GetProperty("pattern").GetString()!, cases);
    }
}
