using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Runs;

namespace Engine.Experiments;

/// <summary>
/// What an <c>engine experiment</c> measures: per arm and seed a final figure, and per arm and seed
/// curves of named metrics; written as summary.json (<c>{"arms": {arm: {"per_seed": {seed: x}, "mean": m}}, ...}</c>)
/// and a self-contained report.html whose charts show each arm's mean over the seeds.
/// </summary>
internal sealed class ExperimentResults
{
    private readonly List<string> arms = [];
    private readonly Dictionary<string, SortedDictionary<ulong, double>> finals = [];
    private readonly Dictionary<(string Metric, string Arm), SortedDictionary<ulong, List<(double X, double Y)>>> curves = [];

    /// <summary>Records an arm's final figure for a seed.</summary>
    public void Final(string arm, ulong seed, double value)
    {
        Arm(arm);
        if (!finals.TryGetValue(arm, out var bySeed))
        {
            finals[arm] = bySeed = [];
        }

        bySeed[seed] = value;
    }

    /// <summary>Adds one point of an arm's curve of <paramref name="metric"/> for a seed.</summary>
    public void Point(string metric, string arm, ulong seed, double x, double y)
    {
        Arm(arm);
        if (!curves.TryGetValue((metric, arm), out var bySeed))
        {
            curves[(metric, arm)] = bySeed = [];
        }

        if (!bySeed.TryGetValue(seed, out var points))
        {
            bySeed[seed] = points = [];
        }

        points.Add((x, y));
    }

    /// <summary>An arm's final figure for a seed.</summary>
    public double FinalOf(string arm, ulong seed) => finals[arm][seed];

    /// <summary>The y of the last point of an arm's curve for a seed.</summary>
    public double LastPoint(string metric, string arm, ulong seed) => curves[(metric, arm)][seed][^1].Y;

    /// <summary>The mean of an arm's final figures over its seeds.</summary>
    public double Mean(string arm) => finals[arm].Values.Average();

    /// <summary>The "arms" object of summary.json.</summary>
    public JsonObject Arms()
    {
        var result = new JsonObject();
        foreach (string arm in arms.Where(finals.ContainsKey))
        {
            var perSeed = new JsonObject();
            foreach (var (seed, value) in finals[arm])
            {
                perSeed[seed.ToString(CultureInfo.InvariantCulture)] = Math.Round(value, 6);
            }

            result[arm] = new JsonObject { ["per_seed"] = perSeed, ["mean"] = Math.Round(Mean(arm), 6) };
        }

        return result;
    }

    /// <summary>A plain-text table: one row per arm, one column per seed, then the mean.</summary>
    public string Table(string what)
    {
        var seeds = finals.Values.SelectMany(v => v.Keys).Distinct().Order().ToList();
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{what,-14}");
        foreach (ulong seed in seeds)
        {
            text.Append(CultureInfo.InvariantCulture, $" {"seed " + seed,9}");
        }

        text.Append("      mean\n");
        foreach (string arm in arms.Where(finals.ContainsKey))
        {
            text.Append(CultureInfo.InvariantCulture, $"{arm,-14}");
            foreach (ulong seed in seeds)
            {
                text.Append(finals[arm].TryGetValue(seed, out double v) ? string.Create(CultureInfo.InvariantCulture, $" {v,9:P1}") : $" {"-",9}");
            }

            text.Append(CultureInfo.InvariantCulture, $" {Mean(arm),9:P1}\n");
        }

        return text.ToString();
    }

    /// <summary>
    /// Writes report.html (atomically): the summary, then one chart per (metric, title, x label) with each
    /// arm's curve averaged over the seeds at the x values every seed has.
    /// </summary>
    public void WriteReport(string path, string title, string description, JsonObject summary,
        IEnumerable<(string Metric, string Title, string XLabel)> charts)
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title><style>")
            .Append("body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}")
            .Append(".grid{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #ddd;padding:8px;border-radius:4px}")
            .Append("pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>");
        html.Append("<h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1><p>").Append(WebUtility.HtmlEncode(description)).Append("</p>");
        html.Append("<h2>Curves (mean over seeds)</h2><div class=\"grid\">");
        foreach (var (metric, chartTitle, xLabel) in charts)
        {
            var series = new List<(string, IReadOnlyList<(double, double)>)>();
            foreach (string arm in arms)
            {
                if (curves.TryGetValue((metric, arm), out var bySeed) && MeanCurve(bySeed) is { Count: > 0 } mean)
                {
                    series.Add((arm, mean));
                }
            }

            if (series.Count > 0)
            {
                html.Append("<div class=\"chart\">").Append(HtmlReport.Svg(chartTitle, series, xLabel)).Append("</div>");
            }
        }

        html.Append("</div><h2>Summary</h2><pre>").Append(WebUtility.HtmlEncode(summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })))
            .Append("</pre></body></html>");
        AtomicFile.WriteAllText(path, html.ToString());
    }

    private void Arm(string arm)
    {
        if (!arms.Contains(arm))
        {
            arms.Add(arm);
        }
    }

    private static List<(double X, double Y)> MeanCurve(SortedDictionary<ulong, List<(double X, double Y)>> bySeed)
    {
        var common = bySeed.Values.Select(p => p.Select(q => q.X).ToHashSet()).Aggregate((a, b) => { a.IntersectWith(b); return a; });
        return common.Order().Select(x => (x, bySeed.Values.Average(p => p.First(q => q.X == x).Y))).ToList();
    }
}
