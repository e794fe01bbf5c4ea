using System.Globalization;
using System.Text.Json;
using Engine.BenchCompare;

namespace Engine.Tests.Benchmarks;

/// <summary>The benchmark comparison tool on synthetic BenchmarkDotNet full-JSON reports.</summary>
public sealed class BenchCompareTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "engine-benchcompare-" + Guid.NewGuid().ToString("N"));

    public BenchCompareTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    /// <summary>A benchmark of a synthetic report: its name and measured ns per op (null: it failed).</summary>
    private sealed record Case(string Name, double[]? Values, string Parameters = "");

    private static Case Ms(string name, params double[] ms) => new(name, [.. ms.Select(m => m * 1e6)]);

    /// <summary>Writes a report as BenchmarkDotNet's full-JSON exporter lays it out (the fields the tool reads).</summary>
    private string Write(string run, params Case[] cases)
    {
        string folder = Path.Combine(dir, run, "results");
        Directory.CreateDirectory(folder);
        var benchmarks = cases.Select(c => new Dictionary<string, object?>
        {
            ["DisplayInfo"] = c.Name,
            ["Namespace"] = "Engine.Benchmarks",
            ["Type"] = c.Name.Split('.')[0],
            ["Method"] = c.Name.Split('.', '(')[1],
            ["FullName"] = "Engine.Benchmarks." + c.Name,
            ["Parameters"] = c.Parameters,
            ["Statistics"] = c.Values is null ? null : new Dictionary<string, object>
            {
                ["OriginalValues"] = c.Values,
                ["N"] = c.Values.Length,
                ["Median"] = Median(c.Values),
                ["Mean"] = c.Values.Average(),
            },
        });
        File.WriteAllText(Path.Combine(folder, "Engine.Benchmarks.Synthetic-report-full.json"),
            JsonSerializer.Serialize(new { Title = run, Benchmarks = benchmarks }));
        return Path.Combine(dir, run);
    }

    private static double Median(double[] v)
    {
        double[] s = [.. v.Order()];
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    private static ComparisonResult Compare(string baseline, string current, ComparisonOptions? options = null) =>
        Comparer.Compare(BenchmarkReports.Load(baseline), BenchmarkReports.Load(current), options ?? new ComparisonOptions());

    private static (int Exit, string Output) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        int exit = CompareCommand.Run(args, output);
        return (exit, output.ToString());
    }

    [Fact]
    public void A_slower_run_is_flagged_and_exits_non_zero()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10, 10.2, 9.9), Ms("Norm.Forward", 1, 1, 1));
        string current = Write("slow", Ms("Gemm.Gemm", 12, 12.5, 11.9), Ms("Norm.Forward", 1, 1, 1));

        ComparisonResult result = Compare(baseline, current);
        BenchmarkComparison gemm = Assert.Single(result.Rows, r => r.FullName.Contains("Gemm", StringComparison.Ordinal));
        Assert.Equal(Verdict.Slower, gemm.Verdict);
        Assert.Equal(1.2, gemm.Ratio, 3);
        Assert.True(result.HasRegression);

        var (exit, output) = Run("compare", baseline, current);
        Assert.Equal(CompareCommand.Regression, exit);
        Assert.Contains("1 slower, 0 faster, 1 same", output, StringComparison.Ordinal);
        Assert.Contains("| Slower | `Engine.Benchmarks.Gemm.Gemm` | 10.000 ms | 12.000 ms | 1.200 |", output, StringComparison.Ordinal);
    }

    [Fact]
    public void An_equal_run_is_not_flagged()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10, 10.2, 9.9), Ms("Norm.Forward", 1, 1.01, 0.99));
        string current = Write("same", Ms("Gemm.Gemm", 10.5, 10.4, 10.6), Ms("Norm.Forward", 0.98, 1, 1));

        ComparisonResult result = Compare(baseline, current);
        Assert.All(result.Rows, r => Assert.Equal(Verdict.Same, r.Verdict));
        Assert.False(result.HasRegression);
        Assert.Equal(CompareCommand.Ok, Run("compare", baseline, current).Exit);
    }

    [Fact]
    public void A_faster_run_is_reported_faster_and_passes()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10, 10, 10), Ms("Norm.Forward", 2, 2, 2));
        string current = Write("fast", Ms("Gemm.Gemm", 5, 5, 5), Ms("Norm.Forward", 2, 2, 2));

        ComparisonResult result = Compare(baseline, current);
        Assert.Equal(Verdict.Faster, result.Rows.Single(r => r.FullName.EndsWith("Gemm", StringComparison.Ordinal)).Verdict);
        Assert.Equal(1, result.Count(Verdict.Faster));
        Assert.Equal(Math.Sqrt(0.5), result.GeometricMeanRatio, 6);
        var (exit, output) = Run("compare", baseline, current);
        Assert.Equal(CompareCommand.Ok, exit);
        Assert.Contains("0 slower, 1 faster, 1 same", output, StringComparison.Ordinal);
        Assert.Contains("Geometric mean of current/baseline: 0.707", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Benchmarks_missing_on_either_side_are_reported()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10), Ms("Old.Gone", 1));
        string current = Write("cur", Ms("Gemm.Gemm", 10), Ms("New.Added", 1));

        ComparisonResult result = Compare(baseline, current);
        Assert.Equal(["Engine.Benchmarks.Old.Gone"], result.OnlyInBaseline);
        Assert.Equal(["Engine.Benchmarks.New.Added"], result.OnlyInCurrent);
        var (exit, output) = Run("compare", baseline, current);
        Assert.Equal(CompareCommand.Ok, exit);
        Assert.Contains("1 missing from the current run, 1 new", output, StringComparison.Ordinal);
        Assert.Contains("- `Engine.Benchmarks.Old.Gone`", output, StringComparison.Ordinal);
        Assert.Contains("- `Engine.Benchmarks.New.Added`", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Changes_under_the_noise_floor_are_the_same_whatever_the_ratio()
    {
        // 400 ns -> 700 ns is 75% slower but only 0.3 us apart: under the default 1 us floor.
        string baseline = Write("base", new Case("Tiny.Op", [400, 410, 390]));
        string current = Write("cur", new Case("Tiny.Op", [700, 710, 690]));

        Assert.Equal(Verdict.Same, Assert.Single(Compare(baseline, current).Rows).Verdict);
        Assert.Equal(CompareCommand.Ok, Run("compare", baseline, current).Exit);
        Assert.Equal(Verdict.Slower, Assert.Single(Compare(baseline, current, new ComparisonOptions(NoiseFloorNs: 100)).Rows).Verdict);
        Assert.Equal(CompareCommand.Regression, Run("compare", baseline, current, "--noise-floor", "100ns").Exit);
    }

    [Fact]
    public void The_threshold_is_an_option()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10, 10, 10));
        string current = Write("cur", Ms("Gemm.Gemm", 10.8, 10.8, 10.8));

        Assert.Equal(CompareCommand.Ok, Run("compare", baseline, current).Exit);
        Assert.Equal(CompareCommand.Regression, Run("compare", baseline, current, "--threshold", "5%").Exit);
        Assert.Equal(CompareCommand.Regression, Run("compare", baseline, current, "--threshold", "0.05").Exit);
    }

    [Fact]
    public void A_failed_benchmark_fails_both_check_and_compare()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10), Ms("Norm.Forward", 1));
        string current = Write("broken", Ms("Gemm.Gemm", 10), new Case("Norm.Forward", null));

        Assert.Equal(["Engine.Benchmarks.Norm.Forward"], Compare(baseline, current).Failed);
        var (exit, output) = Run("check", current);
        Assert.Equal(CompareCommand.Regression, exit);
        Assert.Contains("failed: Engine.Benchmarks.Norm.Forward", output, StringComparison.Ordinal);
        Assert.Equal(CompareCommand.Regression, Run("compare", baseline, current).Exit);
        Assert.Equal(CompareCommand.Ok, Run("check", baseline).Exit);
    }

    [Fact]
    public void Mann_Whitney_keeps_a_clear_regression_and_drops_an_overlapping_one()
    {
        double[] spread = [.. Enumerable.Range(1, 10).Select(i => i * 1e6)];
        string baseline = Write("base", new Case("Clear.Op", [.. Enumerable.Repeat(10e6, 10).Select((v, i) => v + i * 1e3)]),
            new Case("Noisy.Op", spread));
        string current = Write("cur", new Case("Clear.Op", [.. Enumerable.Repeat(20e6, 10).Select((v, i) => v + i * 1e3)]),
            new Case("Noisy.Op", [.. spread.Select(v => v * 1.2)]));
        var options = new ComparisonOptions(MannWhitneyAlpha: 0.05);

        ComparisonResult medians = Compare(baseline, current);
        Assert.All(medians.Rows, r => Assert.Equal(Verdict.Slower, r.Verdict));
        ComparisonResult tested = Compare(baseline, current, options);
        BenchmarkComparison clear = tested.Rows.Single(r => r.FullName.Contains("Clear", StringComparison.Ordinal));
        BenchmarkComparison noisy = tested.Rows.Single(r => r.FullName.Contains("Noisy", StringComparison.Ordinal));
        Assert.Equal(Verdict.Slower, clear.Verdict);
        Assert.True(clear.PValue < 0.001, $"p = {clear.PValue}");
        Assert.Equal(Verdict.Same, noisy.Verdict);
        Assert.True(noisy.PValue > 0.05, $"p = {noisy.PValue}");
    }

    [Fact]
    public void PyTorch_references_become_throughput_ratios_against_the_matching_benchmark()
    {
        string current = Write("cur",
            new Case("GemmBenchmarks.Gemm(N: 512, Device: \"cpu\")", [1e6, 1e6, 1e6], "N=512&Device=cpu"),
            new Case("GemmBenchmarks.Gemm(N: 512, Device: \"opencl:0\")", [5e5, 5e5, 5e5], "N=512&Device=opencl:0"));
        string references = Path.Combine(dir, "pytorch.jsonl");
        var reference = new PyTorchReference("GEMM n=512", "GemmBenchmarks", "Gemm", new Dictionary<string, string> { ["N"] = "512", ["Device"] = "cpu" },
            "GFLOPS", 2.0 * 512 * 512 * 512, 1e9, 134.217728);
        File.WriteAllLines(references, [JsonSerializer.Serialize(reference, PyTorchReference.Json)]);

        SideBySideRow row = Assert.Single(SideBySideRow.Match(PyTorchReference.Load(references), BenchmarkReports.Load(current)));
        Assert.Equal(268.435456, row.Engine!.Value, 6);
        Assert.Equal(2.0, row.Ratio!.Value, 6);
        string markdown = Path.Combine(dir, "report.md");
        var (exit, output) = Run("compare", CompareCommand.NoBaseline, current, "--pytorch", references, "--markdown", markdown);
        Assert.Equal(CompareCommand.Ok, exit);
        Assert.Contains("| GEMM n=512 | GFLOPS | 268 | 134 | 2.00x |", output, StringComparison.Ordinal);
        Assert.Equal(output, File.ReadAllText(markdown));
    }

    /// <summary>A reference file of PyTorch throughputs by label (GFLOPS).</summary>
    private string References(string name, params (string Label, double Gflops)[] values)
    {
        string path = Path.Combine(dir, name + ".jsonl");
        File.WriteAllLines(path, values.Select(v => JsonSerializer.Serialize(new PyTorchReference(v.Label, "GemmBenchmarks", "Gemm",
            new Dictionary<string, string>(), "GFLOPS", 1e9, 1e9, v.Gflops), PyTorchReference.Json)));
        return path;
    }

    [Fact]
    public void The_machine_factor_is_pytorchs_geometric_mean_slowdown_over_shared_references()
    {
        var before = PyTorchReference.Load(References("before", ("a", 100), ("b", 200), ("gone", 50)));
        var after = PyTorchReference.Load(References("after", ("a", 50), ("b", 250), ("new", 10)));
        MachineDrift drift = MachineDrift.Between(before, after)!;
        Assert.Equal(2, drift.References);
        Assert.Equal(Math.Sqrt(2.0 * 0.8), drift.Factor, 12);   // a took 2x the time, b 0.8x
        Assert.Null(MachineDrift.Between(before, PyTorchReference.Load(References("other", ("c", 1)))));
    }

    [Fact]
    public void A_slowdown_the_machine_factor_explains_is_not_a_regression_unless_raw()
    {
        string baseline = Write("base", Ms("Gemm.Gemm", 10, 10, 10), Ms("Norm.Forward", 1, 1, 1));
        string current = Write("drift", Ms("Gemm.Gemm", 12.5, 12.5, 12.5), Ms("Norm.Forward", 1.6, 1.6, 1.6));
        string then = References("then", ("GEMM", 100), ("train", 40));
        string now = References("now", ("GEMM", 80), ("train", 32));   // PyTorch 1.25x slower on both

        var (exit, output) = Run("compare", baseline, current, "--pytorch", now, "--baseline-pytorch", then);
        Assert.Equal(CompareCommand.Regression, exit);   // Norm: 1.6 / 1.25 = 1.28, still slower
        Assert.Contains("machine factor 1.250", output, StringComparison.Ordinal);
        Assert.Contains("| Same | `Engine.Benchmarks.Gemm.Gemm` | 10.000 ms | 12.500 ms | 1.250 | 1.000 |", output, StringComparison.Ordinal);
        Assert.Contains("| Slower | `Engine.Benchmarks.Norm.Forward` | 1.000 ms | 1.600 ms | 1.600 | 1.280 |", output, StringComparison.Ordinal);

        var (rawExit, rawOutput) = Run("compare", baseline, current, "--pytorch", now, "--baseline-pytorch", then, "--raw");
        Assert.Equal(CompareCommand.Regression, rawExit);
        Assert.Contains("not applied", rawOutput, StringComparison.Ordinal);
        Assert.Contains("| Slower | `Engine.Benchmarks.Gemm.Gemm` | 10.000 ms | 12.500 ms | 1.250 |", rawOutput, StringComparison.Ordinal);

        // The same slowdown with PyTorch unchanged is the engine's own: a regression.
        string steady = References("steady", ("GEMM", 100), ("train", 40));
        ComparisonResult judged = Compare(baseline, current, new ComparisonOptions(MachineFactor: 1));
        Assert.Equal(Verdict.Slower, Assert.Single(judged.Rows, r => r.FullName.Contains("Gemm", StringComparison.Ordinal)).Verdict);
        Assert.Contains("machine factor 1.000", Run("compare", baseline, current, "--pytorch", steady, "--baseline-pytorch", then).Output,
            StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("500ns", 500)]
    [InlineData("1us", 1000)]
    [InlineData("2", 2000)]
    [InlineData("1.5ms", 1.5e6)]
    [InlineData("1s", 1e9)]
    public void Noise_floors_read_with_units(string text, double ns) => Assert.Equal(ns, CompareCommand.ParseTimeNs(text), 6);

    [Fact]
    public void Bad_arguments_are_a_usage_error() =>
        Assert.Equal(CompareCommand.UsageError, Run("compare", Path.Combine(dir, "nowhere"), Path.Combine(dir, "nowhere")).Exit);
}
