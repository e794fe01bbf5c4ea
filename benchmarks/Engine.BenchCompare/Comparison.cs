using Perfolizer;
using Perfolizer.Mathematics.SignificanceTesting.Base;
using Perfolizer.Mathematics.SignificanceTesting.MannWhitney;
using Perfolizer.Metrology;

namespace Engine.BenchCompare;

/// <summary>How a benchmark's median moved from the baseline to the current run.</summary>
public enum Verdict
{
    /// <summary>Within the threshold or the noise floor (or not significant).</summary>
    Same,

    /// <summary>Slower by more than the threshold and the noise floor: a regression.</summary>
    Slower,

    /// <summary>Faster by more than the threshold and the noise floor.</summary>
    Faster,
}

/// <summary>Settings of a comparison.</summary>
/// <param name="Threshold">Relative change of the median that counts (0.10: slower when current/baseline &gt; 1.10, faster when baseline/current &gt; 1.10).</param>
/// <param name="NoiseFloorNs">Absolute change of the median (ns) below which a benchmark is the same whatever its ratio.</param>
/// <param name="MannWhitneyAlpha">
/// When set, a change also needs a one-sided Mann-Whitney test on the measured iterations at this level (runs with
/// fewer than two iterations a side are judged by their medians alone).
/// </param>
/// <param name="MachineFactor">
/// How much slower the machine ran the current run than the baseline's, from references outside the engine
/// (<see cref="MachineDrift"/>): current medians are divided by it before they are judged. 1 judges raw medians.
/// </param>
public sealed record ComparisonOptions(double Threshold = 0.10, double NoiseFloorNs = 1000, double? MannWhitneyAlpha = null, double MachineFactor = 1);

/// <summary>One benchmark present in both runs.</summary>
/// <param name="FullName">The benchmark.</param>
/// <param name="BaselineNs">Baseline median (ns).</param>
/// <param name="CurrentNs">Current median (ns).</param>
/// <param name="Verdict">Slower, faster or the same.</param>
/// <param name="PValue">One-sided Mann-Whitney p-value in the direction of the change, when the test ran.</param>
/// <param name="MachineFactor">The comparison's <see cref="ComparisonOptions.MachineFactor"/>.</param>
public sealed record BenchmarkComparison(string FullName, double BaselineNs, double CurrentNs, Verdict Verdict, double? PValue, double MachineFactor = 1)
{
    /// <summary>current / baseline: above 1 is slower.</summary>
    public double Ratio => CurrentNs / BaselineNs;

    /// <summary><see cref="Ratio"/> divided by the machine factor: what the verdict judges.</summary>
    public double JudgedRatio => Ratio / MachineFactor;
}

/// <summary>The outcome of comparing two runs.</summary>
/// <param name="Rows">Benchmarks present and successful in both runs, in the current run's order.</param>
/// <param name="OnlyInBaseline">Benchmarks the current run lacks.</param>
/// <param name="OnlyInCurrent">Benchmarks the baseline lacks (new ones).</param>
/// <param name="Failed">Benchmarks of the current run without results (they threw).</param>
public sealed record ComparisonResult(IReadOnlyList<BenchmarkComparison> Rows, IReadOnlyList<string> OnlyInBaseline,
    IReadOnlyList<string> OnlyInCurrent, IReadOnlyList<string> Failed)
{
    /// <summary>Geometric mean of current/baseline over every compared benchmark (1 when none).</summary>
    public double GeometricMeanRatio => GeometricMean(Rows);

    /// <summary>True when a benchmark is slower or failed: the comparison tool then exits with 1.</summary>
    public bool HasRegression => Failed.Count > 0 || Rows.Any(r => r.Verdict == Verdict.Slower);

    /// <summary>Number of rows with a verdict.</summary>
    public int Count(Verdict verdict) => Rows.Count(r => r.Verdict == verdict);

    /// <summary>Geometric mean of the ratios of some rows (1 when there are none).</summary>
    public static double GeometricMean(IEnumerable<BenchmarkComparison> rows)
    {
        double sum = 0;
        int n = 0;
        foreach (BenchmarkComparison r in rows)
        {
            sum += Math.Log(r.Ratio);
            n++;
        }

        return n == 0 ? 1 : Math.Exp(sum / n);
    }
}

/// <summary>Matches two runs by full name and compares their medians.</summary>
public static class Comparer
{
    /// <summary>Compares <paramref name="current"/> with <paramref name="baseline"/>.</summary>
    public static ComparisonResult Compare(IReadOnlyList<BenchmarkResult> baseline, IReadOnlyList<BenchmarkResult> current,
        ComparisonOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(options.Threshold);
        ArgumentOutOfRangeException.ThrowIfNegative(options.NoiseFloorNs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MachineFactor);
        var before = baseline.ToDictionary(b => b.FullName, StringComparer.Ordinal);
        var names = current.Select(c => c.FullName).ToHashSet(StringComparer.Ordinal);
        var rows = new List<BenchmarkComparison>();
        var onlyInCurrent = new List<string>();
        var failed = new List<string>();
        foreach (BenchmarkResult now in current)
        {
            if (!now.Succeeded)
            {
                failed.Add(now.FullName);
            }
            else if (!before.TryGetValue(now.FullName, out BenchmarkResult? then) || !then.Succeeded)
            {
                onlyInCurrent.Add(now.FullName);
            }
            else
            {
                rows.Add(CompareOne(then, now, options));
            }
        }

        var onlyInBaseline = baseline.Where(b => !names.Contains(b.FullName)).Select(b => b.FullName).ToList();
        return new ComparisonResult(rows, onlyInBaseline, onlyInCurrent, failed);
    }

    private static BenchmarkComparison CompareOne(BenchmarkResult then, BenchmarkResult now, ComparisonOptions options)
    {
        // The current run as it would have measured on the baseline's machine: divided by the machine factor.
        double f = options.MachineFactor;
        double b = then.MedianNs!.Value, c = now.MedianNs!.Value / f;
        Verdict verdict = Math.Abs(c - b) < options.NoiseFloorNs ? Verdict.Same
            : c > b * (1 + options.Threshold) ? Verdict.Slower
            : b > c * (1 + options.Threshold) ? Verdict.Faster
            : Verdict.Same;
        double? p = null;
        if (verdict != Verdict.Same && options.MannWhitneyAlpha is double alpha)
        {
            IReadOnlyList<double> nowValues = f == 1 ? now.Values : [.. now.Values.Select(v => v / f)];
            p = MannWhitneyP(verdict == Verdict.Slower ? nowValues : then.Values, verdict == Verdict.Slower ? then.Values : nowValues,
                options.Threshold);
            // Too few iterations for the test (a dry run) leave the median's verdict standing.
            if (p is double value && value >= alpha)
            {
                verdict = Verdict.Same;
            }
        }

        return new BenchmarkComparison(now.FullName, b, now.MedianNs!.Value, verdict, p, f);
    }

    /// <summary>
    /// p-value of "<paramref name="slow"/> is greater than <paramref name="fast"/> grown by the
    /// threshold" (Perfolizer's one-sided Mann-Whitney U test); null without at least two values a side.
    /// </summary>
    private static double? MannWhitneyP(IReadOnlyList<double> slow, IReadOnlyList<double> fast, double threshold)
    {
        if (slow.Count < 2 || fast.Count < 2)
        {
            return null;
        }

        var shift = Threshold.Parse(FormattableString.Invariant($"{threshold * 100}%"));
        return MannWhitneyTest.Instance.Perform(new Sample([.. slow]), new Sample([.. fast]), AlternativeHypothesis.Greater, shift).PValue;
    }
}
