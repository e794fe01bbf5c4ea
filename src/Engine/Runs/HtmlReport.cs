using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Runs;

/// <summary>
/// A self-contained HTML report of a run: a summary table, SVG line charts of the key curves and the
/// resolved configuration. Inline SVG and CSS only, so it opens offline.
/// </summary>
internal static class HtmlReport
{
    private static readonly (string Phase, string Metric, string Title)[] Charts =
    [
        ("sft", "loss", "SFT loss"),
        ("sft", "test_accuracy", "SFT test accuracy (greedy)"),
        ("rl", "reward_mean", "RL reward mean"),
        ("rl", "accuracy", "RL rollout accuracy"),
        ("rl", "test_accuracy", "RL test accuracy (avg@k)"),
        ("rl", "test_greedy_accuracy", "RL test accuracy (greedy)"),
        ("rl", "response_length", "Response length (tokens)"),
        ("rl", "entropy", "Policy entropy"),
        ("rl", "clip_fraction_high", "Clip fraction (high)"),
        ("rl", "clip_fraction_low", "Clip fraction (low)"),
        ("rl", "approx_kl", "Approx. KL to the sampling policy"),
        ("rl", "kd_loss", "KD loss (mean k over KD tokens)"),
        ("rl", "kd_token_reward", "KD token reward R_t = logp_T - logp (mean)"),
        ("rl", "kd_beta", "KD beta"),
        ("rl", "kd_masked_share", "Share of tokens masked out of KD"),
        ("rl", "offpolicy_token_share", "Share of off-policy (guide) tokens"),
        ("rl", "importance_weight_mean", "Importance weight rho (mean)"),
        ("rl", "importance_weight_max", "Importance weight rho (max)"),
        ("rl", "groups_reused", "Zero-reward groups reused"),
        ("rl", "groups_dropped", "Groups dropped"),
        ("rl", "grad_norm", "Gradient norm"),
        ("rl", "groups_kept", "Groups kept by dynamic sampling"),
        ("rl", "tokens_per_second", "Tokens per second"),
        ("rl", "peak_kv_bytes", "Peak KV bytes of the rollouts"),
        ("rl", "decode_steps", "Decode steps of the rollouts"),
        ("rl", "length_prediction_correlation", "Length predictor: correlation (infinite sampler)"),
        ("rl", "sampling_seconds", "Sampling seconds per step"),
        ("rl", "training_seconds", "Training seconds per step"),
    ];

    /// <summary>Charts with one series per metric whose name starts with the prefix (SFT phase).</summary>
    private static readonly (string Prefix, string Title)[] GroupedCharts =
    [
        ("mix_weight_", "Mixture weights w_k"),
        ("mix_batch_", "Examples per task in the batch (b_k)"),
        ("mix_grad_sq_", "Task gradient norm squared (estimate)"),
        ("mix_variance_", "Task gradient variance sigma_k^2 (estimate)"),
        ("mix_cosine_", "Task gradients: mean pairwise cosine"),
    ];

    /// <summary>Writes report.html for the metrics, summary and config (atomically).</summary>
    public static void Write(string path, string title, IReadOnlyList<JsonObject> metrics, JsonObject summary, JsonNode? config)
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(Escape(title)).Append("</title><style>")
            .Append("body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}")
            .Append(".grid{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #ddd;padding:8px;border-radius:4px}")
            .Append("table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}")
            .Append("pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>");
        html.Append("<h1>").Append(Escape(title)).Append("</h1><h2>Summary</h2><table>");
        foreach (var (key, value) in summary)
        {
            html.Append("<tr><th>").Append(Escape(key)).Append("</th><td>").Append(Escape(value?.ToJsonString() ?? "null")).Append("</td></tr>");
        }

        html.Append("</table><h2>Curves</h2><div class=\"grid\">");
        foreach (var (phase, metric, chartTitle) in Charts)
        {
            var points = metrics.Where(m => (string?)m["phase"] == phase && Number(m[metric]) is not null && Number(m["step"]) is not null)
                .Select(m => (Number(m["step"])!.Value, Number(m[metric])!.Value)).ToList();
            if (points.Count > 0)
            {
                html.Append("<div class=\"chart\">").Append(Svg(chartTitle, points)).Append("</div>");
            }
        }

        foreach (var (prefix, chartTitle) in GroupedCharts)
        {
            // One series per metric with the prefix (multi-task mixing: one per task), named by the rest of its key.
            var keys = metrics.Where(m => (string?)m["phase"] == "sft").SelectMany(m => m.Select(kv => kv.Key))
                .Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).Distinct().ToList();
            var series = keys.Select(k => (k[prefix.Length..], (IReadOnlyList<(double, double)>)metrics
                .Where(m => (string?)m["phase"] == "sft" && Number(m[k]) is not null && Number(m["step"]) is not null)
                .Select(m => (Number(m["step"])!.Value, Number(m[k])!.Value)).ToList())).ToList();
            if (series.Count > 0)
            {
                html.Append("<div class=\"chart\">").Append(Svg(chartTitle, series, "step")).Append("</div>");
            }
        }

        html.Append("</div>");
        if (config is not null)
        {
            html.Append("<h2>Configuration</h2><pre>").Append(Escape(config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })))
                .Append("</pre>");
        }

        html.Append("</body></html>");
        AtomicFile.WriteAllText(path, html.ToString());
    }

    /// <summary>One line chart as an inline SVG.</summary>
    internal static string Svg(string title, IReadOnlyList<(double X, double Y)> points) => Svg(title, [("", points)], "step");

    /// <summary>
    /// A line chart of several named series (a legend when there is more than one) as an inline SVG;
    /// <paramref name="xLabel"/> names the x axis.
    /// </summary>
    internal static string Svg(string title, IReadOnlyList<(string Name, IReadOnlyList<(double X, double Y)> Points)> series, string xLabel)
    {
        const int width = 420, height = 260, left = 56, top = 28, bottom = 36;
        int right = series.Count > 1 ? 110 : 12;
        var all = series.SelectMany(s => s.Points).ToList();
        double xMin = all.Min(p => p.X), xMax = all.Max(p => p.X);
        double yMin = all.Min(p => p.Y), yMax = all.Max(p => p.Y);
        if (xMax == xMin)
        {
            xMax = xMin + 1;
        }

        if (yMax == yMin)
        {
            yMin -= Math.Abs(yMin) * 0.1 + 0.5;
            yMax += Math.Abs(yMax) * 0.1 + 0.5;
        }

        double X(double x) => left + (x - xMin) / (xMax - xMin) * (width - left - right);
        double Y(double y) => top + (1 - (y - yMin) / (yMax - yMin)) * (height - top - bottom);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-size=\"11\">");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(width - right + left) / 2}\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">{Escape(title)}</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left}\" y=\"{top}\" width=\"{width - left - right}\" height=\"{height - top - bottom}\" fill=\"none\" stroke=\"#999\"/>");
        for (int i = 0; i <= 4; i++)
        {
            double v = yMin + (yMax - yMin) * i / 4;
            double y = Y(v);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{y:F1}\" y2=\"{y:F1}\" stroke=\"#eee\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 4}\" y=\"{y + 4:F1}\" text-anchor=\"end\">{Format(v)}</text>");
        }

        for (int i = 0; i <= 4; i++)
        {
            double v = xMin + (xMax - xMin) * i / 4;
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(v):F1}\" y=\"{height - bottom + 14}\" text-anchor=\"middle\">{Format(v)}</text>");
        }

        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(width - right + left) / 2}\" y=\"{height - 4}\" text-anchor=\"middle\">{Escape(xLabel)}</text>");
        for (int k = 0; k < series.Count; k++)
        {
            string color = Palette[k % Palette.Length];
            var points = series[k].Points;
            svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"");
            foreach (var (x, y) in points)
            {
                svg.Append(CultureInfo.InvariantCulture, $"{X(x):F1},{Y(y):F1} ");
            }

            svg.Append("\"/>");
            if (points.Count <= 40)
            {
                foreach (var (x, y) in points)
                {
                    svg.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(x):F1}\" cy=\"{Y(y):F1}\" r=\"2.5\" fill=\"{color}\"/>");
                }
            }

            if (series.Count > 1)
            {
                int ly = top + 8 + 14 * k;
                svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{width - right + 8}\" x2=\"{width - right + 22}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/>");
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width - right + 26}\" y=\"{ly + 4}\">{Escape(series[k].Name)}</text>");
            }
        }

        svg.Append("</svg>");
        return svg.ToString();
    }

    private static readonly string[] Palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

    private static string Format(double v) =>
        Math.Abs(v) >= 1000 ? v.ToString("F0", CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 1 ? v.ToString("G4", CultureInfo.InvariantCulture)
        : v.ToString("G3", CultureInfo.InvariantCulture);

    private static string Escape(string text) => WebUtility.HtmlEncode(text);

    /// <summary>A JSON number as a double, whatever CLR type the node was built from; null otherwise.</summary>
    internal static double? Number(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
            ? double.Parse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture)
            : null;
}
