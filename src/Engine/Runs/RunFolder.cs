using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Runs;

/// <summary>
/// The folder of one run: config.json (the resolved settings), metrics.jsonl (one JSON object per
/// step and phase), checkpoints/, report.html and summary.json. Every file but the metrics log is
/// written atomically; the log is appended line by line and flushed.
/// </summary>
internal sealed class RunFolder : IDisposable
{
    /// <summary>The resolved configuration's file name.</summary>
    public const string ConfigFile = "config.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private StreamWriter? metrics;

    public RunFolder(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(Path);
        Directory.CreateDirectory(CheckpointsPath);
    }

    public string Path { get; }

    /// <summary>
    /// Writes nothing (config, metrics, summary): a data-parallel rank other than 0, which reads the run
    /// folder (to resume) while rank 0 alone writes it.
    /// </summary>
    public bool ReadOnly { get; init; }

    public string CheckpointsPath => System.IO.Path.Combine(Path, "checkpoints");

    public string MetricsPath => System.IO.Path.Combine(Path, "metrics.jsonl");

    public string ReportPath => System.IO.Path.Combine(Path, "report.html");

    public string SummaryPath => System.IO.Path.Combine(Path, "summary.json");

    public string ConfigPath => System.IO.Path.Combine(Path, ConfigFile);

    /// <summary>Writes the resolved configuration.</summary>
    public void WriteConfig(JsonNode config)
    {
        if (!ReadOnly)
        {
            AtomicFile.WriteAllText(ConfigPath, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    /// <summary>Appends one metrics line: the record's properties (snake_case) plus "phase".</summary>
    public void Log(string phase, object record)
    {
        if (ReadOnly)
        {
            return;
        }

        JsonObject line = JsonSerializer.SerializeToNode(record, record.GetType(), Json)!.AsObject();
        var ordered = new JsonObject { ["phase"] = phase };
        foreach (var (key, value) in line)
        {
            ordered[key] = value?.DeepClone();
        }

        metrics ??= new StreamWriter(new FileStream(MetricsPath, FileMode.Append, FileAccess.Write, FileShare.Read));
        metrics.WriteLine(ordered.ToJsonString(Json));
        metrics.Flush();
    }

    /// <summary>
    /// On resume: keeps only the metrics lines up to the checkpoint (phase order, then step), so the
    /// log never holds steps the resumed run will write again.
    /// </summary>
    public void TruncateMetrics(Func<JsonObject, bool> keep)
    {
        metrics?.Dispose();
        metrics = null;
        if (ReadOnly || !File.Exists(MetricsPath))
        {
            return;
        }

        var lines = File.ReadAllLines(MetricsPath).Where(l => l.Length > 0 && keep(JsonNode.Parse(l)!.AsObject())).ToArray();
        AtomicFile.WriteAllText(MetricsPath, lines.Length == 0 ? "" : string.Join("\n", lines) + "\n");
    }

    /// <summary>Every metrics line written so far.</summary>
    public List<JsonObject> ReadMetrics()
    {
        metrics?.Flush();
        if (!File.Exists(MetricsPath))
        {
            return [];
        }

        using var stream = new FileStream(MetricsPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var result = new List<JsonObject>();
        while (reader.ReadLine() is { } line)
        {
            if (line.Length > 0)
            {
                result.Add(JsonNode.Parse(line)!.AsObject());
            }
        }

        return result;
    }

    /// <summary>Writes summary.json.</summary>
    public void WriteSummary(JsonObject summary)
    {
        if (!ReadOnly)
        {
            AtomicFile.WriteAllText(SummaryPath, summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    public void Dispose() => metrics?.Dispose();
}
