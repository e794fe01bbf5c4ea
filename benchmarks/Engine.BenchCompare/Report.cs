using System.Globalization;
using System.Text;

namespace Engine.BenchCompare;

/// <summary>Writes a comparison (and the engine-vs-PyTorch lines) as Markdown, readable printed too.</summary>
public static class Report
{
    /// <summary>The whole report.</summary>
    /// <param name="comparison">Baseline comparison, or null when there is no baseline.</param>
    /// <param name="sideBySide">Engine-vs-PyTorch rows (may be empty).</param>
    /// <param name="options">Settings the comparison used.</param>
    /// <param name="baselineName">Where the baseline came from.</param>
    /// <param name="currentName">Where the current run came from.</param>
    /// <param name="drift">The machine's drift between the runs, when both had PyTorch references.</param>
    public static string Markdown(ComparisonResult? comparison, IReadOnlyList<SideBySideRow> sideBySide, ComparisonOptions options,
        string baselineName, string currentName, MachineDrift? drift = null)
    {
        var s = new StringBuilder();
        s.AppendLine("# Benchmark comparison").AppendLine();
        s.AppendLine(Inv($"- current: `{currentName}`"));
        s.AppendLine(Inv($"- baseline: `{baselineName}`"));
        string test = options.MannWhitneyAlpha is double a ? Inv($", Mann-Whitney one-sided at alpha {a}") : "";
        s.AppendLine(Inv($"- medians compared; threshold {options.Threshold * 100:G4}%, noise floor {Time(options.NoiseFloorNs)}{test}"));
        if (drift is not null)
        {
            string use = options.MachineFactor == 1 && drift.Factor != 1 ? "not applied (raw medians judged)" : "current medians are divided by it before they are judged";
            s.AppendLine(Inv($"- machine factor {drift.Factor:F3}: PyTorch's time ratio current/baseline, geometric mean over the {drift.References} references measured in both runs; {use}"));
        }

        s.AppendLine();
        if (comparison is null)
        {
            s.AppendLine("No baseline reports: nothing to compare.").AppendLine();
        }
        else
        {
            AppendComparison(s, comparison, options.MachineFactor);
        }

        if (sideBySide.Count > 0)
        {
            s.AppendLine("## Engine vs PyTorch (same run)").AppendLine();
            s.AppendLine("| Comparison | Unit | Engine | PyTorch | Engine / PyTorch |");
            s.AppendLine("| --- | --- | ---: | ---: | ---: |");
            foreach (SideBySideRow r in sideBySide)
            {
                string engine = r.Engine is double e ? Number(e) : "not run";
                string ratio = r.Ratio is double q ? Inv($"{q:F2}x") : "-";
                s.AppendLine(Inv($"| {r.Reference.Label} | {r.Reference.Unit} | {engine} | {Number(r.Reference.PyTorch)} | {ratio} |"));
            }

            s.AppendLine();
        }

        return s.ToString();
    }

    private static void AppendComparison(StringBuilder s, ComparisonResult c, double factor)
    {
        s.AppendLine(Inv($"**{c.Count(Verdict.Slower)} slower, {c.Count(Verdict.Faster)} faster, {c.Count(Verdict.Same)} same**; ") +
            Inv($"{c.OnlyInBaseline.Count} missing from the current run, {c.OnlyInCurrent.Count} new, {c.Failed.Count} failed."));
        s.AppendLine();
        string judged = factor != 1 ? Inv($" ({c.GeometricMeanRatio / factor:F3} divided by the machine factor)") : "";
        s.AppendLine(Inv($"Geometric mean of current/baseline: {c.GeometricMeanRatio:F3}{judged} over {c.Rows.Count} benchmarks") +
            (c.Count(Verdict.Slower) > 0 ? Inv($" (slower ones: {ComparisonResult.GeometricMean(c.Rows.Where(r => r.Verdict == Verdict.Slower)):F3})") : "") +
            ". Ratios above 1 are slower.");
        s.AppendLine();
        if (c.Rows.Count > 0)
        {
            bool p = c.Rows.Any(r => r.PValue is not null);
            bool scaled = factor != 1;
            s.AppendLine("| Verdict | Benchmark | Baseline | Current | Ratio |" + (scaled ? " Ratio / machine |" : "") + (p ? " p |" : ""));
            s.AppendLine("| --- | --- | ---: | ---: | ---: |" + (scaled ? " ---: |" : "") + (p ? " ---: |" : ""));
            // Regressions first, then improvements, each worst first, so the top of the table is what needs reading.
            foreach (BenchmarkComparison r in c.Rows.OrderBy(r => r.Verdict switch { Verdict.Slower => 0, Verdict.Faster => 1, _ => 2 })
                         .ThenByDescending(r => r.Verdict == Verdict.Faster ? 1 / r.JudgedRatio : r.JudgedRatio))
            {
                string judgedRatio = scaled ? Inv($" {r.JudgedRatio:F3} |") : "";
                string pValue = p ? (r.PValue is double v ? Inv($" {v:G3} |") : " - |") : "";
                s.AppendLine(Inv($"| {r.Verdict} | `{r.FullName}` | {Time(r.BaselineNs)} | {Time(r.CurrentNs)} | {r.Ratio:F3} |{judgedRatio}{pValue}"));
            }

            s.AppendLine();
        }

        List(s, "Failed in the current run (no results)", c.Failed);
        List(s, "Missing from the current run", c.OnlyInBaseline);
        List(s, "New (not in the baseline)", c.OnlyInCurrent);
    }

    private static void List(StringBuilder s, string title, IReadOnlyList<string> names)
    {
        if (names.Count == 0)
        {
            return;
        }

        s.AppendLine(Inv($"{title}:")).AppendLine();
        foreach (string name in names)
        {
            s.AppendLine(Inv($"- `{name}`"));
        }

        s.AppendLine();
    }

    /// <summary>A duration in ns with a readable unit.</summary>
    public static string Time(double ns) => ns switch
    {
        >= 1e9 => Inv($"{ns / 1e9:F3} s"),
        >= 1e6 => Inv($"{ns / 1e6:F3} ms"),
        >= 1e3 => Inv($"{ns / 1e3:F3} us"),
        _ => Inv($"{ns:F1} ns"),
    };

    private static string Number(double x) => x >= 100 ? Inv($"{x:N0}") : Inv($"{x:F2}");

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
