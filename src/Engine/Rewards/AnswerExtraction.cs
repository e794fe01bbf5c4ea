using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Engine.Scoring;

/// <summary>
/// Finds the final answer in a worked solution and reads it as a number: the last
/// <c>\boxed{...}</c>, else the text after the last <c>####</c> (GSM8K), else the last number.
/// </summary>
internal static partial class AnswerExtraction
{
    /// <summary>
    /// The final answer of a reference: as <see cref="FinalAnswer"/>, except that a reference with
    /// neither <c>\boxed{}</c> nor <c>####</c> that reads as one number (e.g. "3/4", "\frac{3}{4}")
    /// or holds no number at all (e.g. "x^2+1") is the answer as a whole.
    /// </summary>
    public static string ReferenceAnswer(string reference)
    {
        if (LastBoxed(reference) is null && !reference.Contains("####", StringComparison.Ordinal)
            && (TryNumber(reference, out _) || LastNumberText(reference) is null))
        {
            return reference.Trim();
        }

        return FinalAnswer(reference);
    }

    /// <summary>The final answer's text (trimmed; empty when there is none).</summary>
    public static string FinalAnswer(string text)
    {
        if (LastBoxed(text) is string boxed)
        {
            return boxed.Trim();
        }

        int hashes = text.LastIndexOf("####", StringComparison.Ordinal);
        if (hashes >= 0)
        {
            string tail = text[(hashes + 4)..];
            int end = tail.IndexOf('\n', StringComparison.Ordinal);
            return (end < 0 ? tail : tail[..end]).Trim();
        }

        return LastNumberText(text) ?? "";
    }

    /// <summary>The content of the last <c>\boxed{...}</c> (nested braces matched), or null.</summary>
    public static string? LastBoxed(string text)
    {
        int start = text.LastIndexOf("\\boxed", StringComparison.Ordinal);
        while (start >= 0)
        {
            int open = start + "\\boxed".Length;
            while (open < text.Length && text[open] == ' ')
            {
                open++;
            }

            if (open < text.Length && text[open] == '{')
            {
                int depth = 0;
                for (int i = open; i < text.Length; i++)
                {
                    depth += text[i] == '{' ? 1 : text[i] == '}' ? -1 : 0;
                    if (depth == 0)
                    {
                        return text[(open + 1)..i];
                    }
                }
            }

            start = start == 0 ? -1 : text.LastIndexOf("\\boxed", start - 1, StringComparison.Ordinal);
        }

        return null;
    }

    /// <summary>The last number written in <paramref name="text"/> (thousands separators allowed), or null.</summary>
    public static string? LastNumberText(string text)
    {
        MatchCollection matches = NumberPattern().Matches(text);
        return matches.Count == 0 ? null : matches[^1].Value;
    }

    /// <summary>
    /// Reads an answer as a number: plain and signed numbers with optional thousands commas,
    /// fractions a/b and <c>\frac{a}{b}</c>, percentages, surrounded by $ signs, units or words (the
    /// number must then be the only one).
    /// </summary>
    public static bool TryNumber(string answer, out double value)
    {
        string s = Normalize(answer);
        if (FractionPattern().Match(s) is { Success: true } f
            && TryPlain(f.Groups["num"].Value, out double num) && TryPlain(f.Groups["den"].Value, out double den) && den != 0)
        {
            value = (f.Groups["sign"].Value == "-" ? -num : num) / den;
            return true;
        }

        if (TryPlain(s, out value))
        {
            return true;
        }

        // "72 dollars", "x = 5": exactly one number in the text.
        MatchCollection numbers = NumberPattern().Matches(s);
        if (numbers.Count == 1)
        {
            return TryPlain(numbers[0].Value, out value);
        }

        value = 0;
        return false;
    }

    /// <summary>Numbers equal within a relative 1e-6 (absolute for values near 0).</summary>
    public static bool SameNumber(double a, double b) => Math.Abs(a - b) <= 1e-6 * Math.Max(1, Math.Max(Math.Abs(a), Math.Abs(b)));

    /// <summary>Whitespace collapsed, TeX wrappers ($, \left, \right, \!, \,, \text{...}) and trailing full stops removed.</summary>
    public static string Normalize(string text)
    {
        var sb = new StringBuilder(text.Trim());
        foreach (string noise in new[] { "\\left", "\\right", "\\!", "\\,", "\\;", "$", "\\%", "%" })
        {
            sb.Replace(noise, "");
        }

        string s = TextWrapper().Replace(sb.ToString(), "$1");
        s = DfracPattern().Replace(s, "\\frac");
        s = WhitespacePattern().Replace(s, " ").Trim().TrimEnd('.').Trim();
        return s;
    }

    private static bool TryPlain(string s, out double value) =>
        double.TryParse(s.Replace(",", "", StringComparison.Ordinal).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out value)
        && double.IsFinite(value);

    [GeneratedRegex(@"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")]
    private static partial Regex NumberPattern();

    [GeneratedRegex(@"^(?:(?<sign>-?)\\frac\{(?<num>[^{}]+)\}\{(?<den>[^{}]+)\}|(?<sign>)(?<num>-?[\d.,]+)\s*/\s*(?<den>-?[\d.,]+))$")]
    private static partial Regex FractionPattern();

    [GeneratedRegex(@"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")]
    private static partial Regex TextWrapper();

    [GeneratedRegex(@"\\[dt]frac")]
    private static partial Regex DfracPattern();

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhitespacePattern();
}
