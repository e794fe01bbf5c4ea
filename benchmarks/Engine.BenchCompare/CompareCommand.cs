using System.Globalization;

namespace Engine.BenchCompare;

/// <summary>
/// The command line: <c>compare BASELINE CURRENT [options]</c> prints (and optionally writes) the
/// report and exits 1 on a regression; <c>check CURRENT</c> only verifies that every benchmark ran.
/// </summary>
public static class CompareCommand
{
    /// <summary>Exit code when nothing regressed.</summary>
    public const int Ok = 0;

    /// <summary>Exit code of a regression, a failed benchmark or an empty run.</summary>
    public const int Regression = 1;

    /// <summary>Exit code of a usage or input error.</summary>
    public const int UsageError = 2;

    /// <summary>The BASELINE argument that means there is none yet (only the PyTorch lines and failures are reported).</summary>
    public const string NoBaseline = "none";

    private const string Usage = """
        usage:
          Engine.BenchCompare compare BASELINE CURRENT [--threshold 10%] [--noise-floor 1us] [--mann-whitney [ALPHA]]
                                      [--pytorch FILE.jsonl] [--baseline-pytorch FILE.jsonl] [--raw] [--markdown FILE.md]
          Engine.BenchCompare check CURRENT
        BASELINE and CURRENT are BenchmarkDotNet full-JSON reports (*-report-full.json) or folders holding them
        (BASELINE "none": no baseline yet).
        compare exits 1 when a benchmark is slower than the baseline by more than the threshold and the noise
        floor, or failed; check exits 1 when a benchmark failed or none ran. With the PyTorch references of both
        runs (--pytorch, --baseline-pytorch), current medians are first divided by the machine factor, PyTorch's
        own slowdown between the runs (--raw: judge raw medians).
        """;

    /// <summary>Runs the command; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter output)
    {
        try
        {
            return args switch
            {
                ["check", string current] => Check(current, output),
                ["compare", string baseline, string current, .. var rest] => Compare(baseline, current, rest, output),
                _ => Fail(output, "expected a command"),
            };
        }
        catch (Exception e) when (e is IOException or InvalidDataException or FormatException or System.Text.Json.JsonException)
        {
            output.WriteLine($"error: {e.Message}");
            return UsageError;
        }
    }

    private static int Check(string current, TextWriter output)
    {
        IReadOnlyList<BenchmarkResult> results = BenchmarkReports.Load(current);
        var failed = results.Where(r => !r.Succeeded).ToList();
        foreach (BenchmarkResult f in failed)
        {
            output.WriteLine($"failed: {f.FullName}");
        }

        output.WriteLine($"{results.Count} benchmarks, {failed.Count} failed");
        return results.Count == 0 || failed.Count > 0 ? Regression : Ok;
    }

    private static int Compare(string baselinePath, string currentPath, string[] rest, TextWriter output)
    {
        var options = new ComparisonOptions();
        string? pytorch = null, baselinePytorch = null, markdown = null;
        bool raw = false;
        for (int i = 0; i < rest.Length; i++)
        {
            string? next = i + 1 < rest.Length ? rest[i + 1] : null;
            switch (rest[i])
            {
                case "--threshold" when next is not null:
                    options = options with { Threshold = ParseFraction(next) };
                    i++;
                    break;
                case "--noise-floor" when next is not null:
                    options = options with { NoiseFloorNs = ParseTimeNs(next) };
                    i++;
                    break;
                case "--mann-whitney":
                    bool hasAlpha = next is not null && !next.StartsWith("--", StringComparison.Ordinal);
                    options = options with { MannWhitneyAlpha = hasAlpha ? double.Parse(next!, CultureInfo.InvariantCulture) : 0.05 };
                    i += hasAlpha ? 1 : 0;
                    break;
                case "--pytorch" when next is not null:
                    pytorch = next;
                    i++;
                    break;
                case "--baseline-pytorch" when next is not null:
                    baselinePytorch = next;
                    i++;
                    break;
                case "--raw":
                    raw = true;
                    break;
                case "--markdown" when next is not null:
                    markdown = next;
                    i++;
                    break;
                default:
                    return Fail(output, $"unknown or incomplete option {rest[i]}");
            }
        }

        IReadOnlyList<BenchmarkResult> current = BenchmarkReports.Load(currentPath);
        IReadOnlyList<BenchmarkResult> baseline = baselinePath == NoBaseline ? [] : BenchmarkReports.Load(baselinePath);
        IReadOnlyList<PyTorchReference> references = pytorch is null || !File.Exists(pytorch) ? [] : PyTorchReference.Load(pytorch);
        MachineDrift? drift = baselinePytorch is null || !File.Exists(baselinePytorch) || references.Count == 0
            ? null
            : MachineDrift.Between(PyTorchReference.Load(baselinePytorch), references);
        if (drift is not null && !raw)
        {
            options = options with { MachineFactor = drift.Factor };
        }

        ComparisonResult? comparison = baseline.Count == 0 ? null : Comparer.Compare(baseline, current, options);
        IReadOnlyList<SideBySideRow> sideBySide = SideBySideRow.Match(references, current);
        string report = Report.Markdown(comparison, sideBySide, options, baselinePath, currentPath, drift);
        output.Write(report);
        if (markdown is not null)
        {
            File.WriteAllText(markdown, report);
        }

        bool failed = current.Count == 0 || current.Any(r => !r.Succeeded);
        return failed || comparison?.HasRegression == true ? Regression : Ok;
    }

    /// <summary>"10%" or "0.1".</summary>
    internal static double ParseFraction(string text) => text.EndsWith('%')
        ? double.Parse(text[..^1], CultureInfo.InvariantCulture) / 100
        : double.Parse(text, CultureInfo.InvariantCulture);

    /// <summary>"500ns", "1us", "2ms", "1s", or a plain number of microseconds.</summary>
    internal static double ParseTimeNs(string text)
    {
        (string suffix, double scale)[] units = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)];
        foreach ((string suffix, double scale) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal))
            {
                return double.Parse(text[..^suffix.Length], CultureInfo.InvariantCulture) * scale;
            }
        }

        return double.Parse(text, CultureInfo.InvariantCulture) * 1e3;
    }

    private static int Fail(TextWriter output, string message)
    {
        output.WriteLine($"error: {message}");
        output.WriteLine(Usage);
        return UsageError;
    }
}
