using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Engine.Benchmarks;

/// <summary>Tokens per second: tokens per invocation (from the preset) over the median time.</summary>
public sealed class TokensPerSecondColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(TokensPerSecondColumn);

    /// <inheritdoc/>
    public string ColumnName => "tokens/s";

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
    public string Legend => "Tokens processed per second (tokens per invocation / median)";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? median = summary[benchmarkCase]?.ResultStatistics?.Median;
        int? tokens = Tokens(benchmarkCase);
        return median is > 0 && tokens is int t ? (t / (median.Value / 1e9)).ToString("F0", CultureInfo.InvariantCulture) : "NA";
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    private static int? Tokens(BenchmarkCase benchmarkCase)
    {
        string? preset = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Preset")?.Value as string;
        if (preset is null)
        {
            return null;
        }

        Type type = benchmarkCase.Descriptor.Type;
        return type == typeof(DecodeBenchmarks) ? DecodeBenchmarks.TokensPerRun
            : type == typeof(SamplingBenchmarks) ? SamplingBenchmarks.Sequences
            : Presets.TrainTokens(preset);
    }
}

/// <summary>Adds the tokens/s column.</summary>
public sealed class TokensConfig : ManualConfig
{
    /// <summary>Creates the config.</summary>
    public TokensConfig() => AddColumn(new TokensPerSecondColumn());
}
