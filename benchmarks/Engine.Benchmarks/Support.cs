using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Engine.Benchmarks;

/// <summary>
/// GFLOPS = 2 m n k / median time. Reads the sizes from the benchmark's parameters: M, N and K
/// where present, a square product of size N otherwise (a missing M or K is taken equal to N).
/// </summary>
public sealed class GflopsColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc/>
    public string ColumnName => "GFLOPS";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => 0;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => "Floating-point throughput: 2 m n k / median time, in 10^9 operations per second";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? median = summary[benchmarkCase]?.ResultStatistics?.Median;
        double? n = Size(benchmarkCase, "N");
        if (median is not > 0 || n is null)
        {
            return "NA";
        }

        double m = Size(benchmarkCase, "M") ?? n.Value;
        double k = Size(benchmarkCase, "K") ?? n.Value;
        double gflops = 2.0 * m * n.Value * k / median.Value; // median in ns: flops per ns = GFLOPS
        return gflops.ToString("F1", CultureInfo.InvariantCulture);
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    private static double? Size(BenchmarkCase benchmarkCase, string name)
    {
        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            if (parameter.Name == name && parameter.Value is int value)
            {
                return value;
            }
        }

        return null;
    }
}
