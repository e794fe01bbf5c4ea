using System.Text.Json;

namespace Engine.BenchCompare;

/// <summary>One benchmark case of a BenchmarkDotNet full-JSON report.</summary>
/// <param name="FullName">BenchmarkDotNet's full name (type, method and parameters): the key runs are matched by.</param>
/// <param name="Type">Benchmark class name without namespace (e.g. <c>GemmBenchmarks</c>).</param>
/// <param name="Method">Benchmark method name.</param>
/// <param name="Parameters">Parameter values by name, as the report prints them.</param>
/// <param name="MedianNs">Median time per operation in nanoseconds, or null when the benchmark failed.</param>
/// <param name="Values">The measured times per operation (ns) the statistics came from; empty when it failed.</param>
public sealed record BenchmarkResult(string FullName, string Type, string Method, IReadOnlyDictionary<string, string> Parameters,
    double? MedianNs, IReadOnlyList<double> Values)
{
    /// <summary>True when the benchmark ran and has statistics.</summary>
    public bool Succeeded => MedianNs is not null;
}

/// <summary>Reads BenchmarkDotNet full-JSON reports (<c>*-report-full.json</c>, from <c>--exporters fulljson</c>).</summary>
public static class BenchmarkReports
{
    /// <summary>File name ending of a full-JSON report.</summary>
    public const string FileSuffix = "-report-full.json";

    /// <summary>
    /// Every benchmark of a report file, or of every report under a folder (searched recursively, so
    /// a BenchmarkDotNet artifacts folder or a baseline folder both work).
    /// </summary>
    /// <exception cref="FileNotFoundException">The path is neither a file nor a folder.</exception>
    /// <exception cref="InvalidDataException">A report is not BenchmarkDotNet full JSON, or a name occurs twice.</exception>
    public static IReadOnlyList<BenchmarkResult> Load(string path)
    {
        IEnumerable<string> files = Directory.Exists(path)
            ? Directory.EnumerateFiles(path, "*" + FileSuffix, SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            : File.Exists(path) ? [path] : throw new FileNotFoundException($"no report file or folder at {path}", path);
        var results = new List<BenchmarkResult>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in files)
        {
            foreach (BenchmarkResult result in Parse(File.ReadAllText(file), file))
            {
                if (!seen.Add(result.FullName))
                {
                    throw new InvalidDataException($"{file}: benchmark {result.FullName} also appears in an earlier report of {path}");
                }

                results.Add(result);
            }
        }

        return results;
    }

    /// <summary>Parses the text of one full-JSON report; <paramref name="source"/> names it in errors.</summary>
    public static IReadOnlyList<BenchmarkResult> Parse(string json, string source = "report")
    {
        using JsonDocument document = JsonDocument.Parse(json);
        if (!document.RootElement.TryGetProperty("Benchmarks", out JsonElement benchmarks) || benchmarks.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{source}: no Benchmarks array (not a BenchmarkDotNet full-JSON report?)");
        }

        var results = new List<BenchmarkResult>();
        foreach (JsonElement b in benchmarks.EnumerateArray())
        {
            string fullName = Text(b, "FullName") ?? throw new InvalidDataException($"{source}: a benchmark without FullName");
            double? median = null;
            var values = new List<double>();
            if (b.TryGetProperty("Statistics", out JsonElement stats) && stats.ValueKind == JsonValueKind.Object)
            {
                median = stats.GetProperty("Median").GetDouble();
                if (stats.TryGetProperty("OriginalValues", out JsonElement original) && original.ValueKind == JsonValueKind.Array)
                {
                    values.AddRange(original.EnumerateArray().Select(v => v.GetDouble()));
                }
            }

            results.Add(new BenchmarkResult(fullName, Text(b, "Type") ?? "", Text(b, "Method") ?? "", ParseParameters(Text(b, "Parameters")),
                median, values));
        }

        return results;
    }

    // BenchmarkDotNet writes the parameters as "N=512&Variant=NN&Device=cpu".
    private static Dictionary<string, string> ParseParameters(string? text) =>
        (text ?? "").Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2))
            .ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "", StringComparer.Ordinal);

    private static string? Text(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
