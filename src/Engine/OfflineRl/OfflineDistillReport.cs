using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.OfflineRl;

/// <summary>The offline-distillation experiment's report.html: returns per arm and seed, a bar chart, and a few distilled states next to the real states they started from (inline SVG, opens offline).</summary>
internal static class OfflineDistillReport
{
    private static readonly (int R, int G, int B)[] Palette = [(110, 110, 110), (30, 160, 60), (215, 40, 40), (40, 90, 220)];

    /// <summary>Writes the report (atomically).</summary>
    public static void Write(string path, JsonObject summary, (float[] Real, float[] Distilled, int[] Labels, int[] Shape)? pictures)
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Dataset distillation for offline RL</title><style>")
            .Append("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}")
            .Append("td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}.pics{display:flex;flex-wrap:wrap;gap:18px}")
            .Append("figure{margin:0}figcaption{font-size:12px;text-align:center}</style></head><body>");
        html.Append("<h1>Dataset distillation for offline RL (arXiv:2407.20299)</h1>");
        html.Append(CultureInfo.InvariantCulture,
            $"<p>Environment <b>{Escape((string?)summary["environment"] ?? "")}</b>; dataset {summary["dataset_size"]} steps (mean teacher-data return {summary["dataset_mean_return"]}, noise-free planner {summary["planner_mean_return_train"]}); synthetic set {summary["synthetic_size"]} states; {summary["train_levels"]} training levels, {summary["unseen_levels"]} unseen levels; wall time {summary["wall_seconds"]} s.</p>");

        var arms = (JsonObject)summary["arms"]!;
        var seeds = arms.First().Value!["per_seed"]!.AsObject().Select(kv => kv.Key).ToList();
        html.Append("<h2>Mean greedy return</h2><table><tr><th style=\"text-align:left\">arm</th>");
        foreach (string seed in seeds)
        {
            html.Append("<th>seed ").Append(Escape(seed)).Append(" train</th><th>seed ").Append(Escape(seed)).Append(" unseen</th>");
        }

        html.Append("<th>mean train</th><th>mean unseen</th></tr>");
        var bars = new List<(string Arm, double Train, double Unseen)>();
        foreach (var (arm, node) in arms)
        {
            html.Append("<tr><th style=\"text-align:left\">").Append(Escape(arm)).Append("</th>");
            foreach (string seed in seeds)
            {
                JsonNode r = node!["per_seed"]![seed]!;
                html.Append("<td>").Append(Num(r["train"])).Append("</td><td>").Append(Num(r["unseen"])).Append("</td>");
            }

            html.Append("<td><b>").Append(Num(node!["mean_train"])).Append("</b></td><td><b>").Append(Num(node["mean_unseen"])).Append("</b></td></tr>");
            bars.Add((arm, (double)node["mean_train"]!, (double)node["mean_unseen"]!));
        }

        html.Append("</table>").Append(BarChart(bars));
        if (pictures is { } p)
        {
            html.Append("<h2>Distilled states next to the real states they started from</h2>")
                .Append("<p>Egocentric windows (agent in the centre); colour per channel: grey channel 0, green 1, red 2, blue 3; intensity = |value| clipped to 1.</p><div class=\"pics\">");
            int size = p.Shape.Aggregate(1, (a, b) => a * b);
            var shown = new HashSet<int>();
            for (int row = 0; row < p.Labels.Length && shown.Count < 6; row++)
            {
                if (shown.Add(p.Labels[row]))
                {
                    html.Append("<figure>").Append(State(p.Real.AsSpan(row * size, size), p.Shape)).Append(State(p.Distilled.AsSpan(row * size, size), p.Shape))
                        .Append(CultureInfo.InvariantCulture, $"<figcaption>action {p.Labels[row]}: real (left), distilled (right)</figcaption></figure>");
                }
            }

            html.Append("</div>");
        }

        html.Append("<h2>summary.json</h2><pre>").Append(Escape(summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })))
            .Append("</pre></body></html>");
        AtomicFile.WriteAllText(path, html.ToString());
    }

    private static string BarChart(List<(string Arm, double Train, double Unseen)> bars)
    {
        const int width = 560, height = 240, left = 50, bottom = 40, top = 20;
        double max = Math.Max(1e-9, bars.Max(b => Math.Max(b.Train, b.Unseen)));
        double min = Math.Min(0, bars.Min(b => Math.Min(b.Train, b.Unseen)));
        double slot = (width - left) / (double)bars.Count;
        double Y(double v) => top + (1 - (v - min) / (max - min)) * (height - top - bottom);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-size=\"11\">");
        svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width}\" y1=\"{Y(0):F1}\" y2=\"{Y(0):F1}\" stroke=\"#999\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 4}\" y=\"{Y(max) + 4:F1}\" text-anchor=\"end\">{max:G3}</text><text x=\"{left - 4}\" y=\"{Y(0) + 4:F1}\" text-anchor=\"end\">0</text>");
        for (int i = 0; i < bars.Count; i++)
        {
            double x = left + i * slot + slot * 0.15, w = slot * 0.33;
            foreach (var (value, offset, colour) in new[] { (bars[i].Train, 0.0, "#1f77b4"), (bars[i].Unseen, w, "#ff7f0e") })
            {
                double y0 = Y(Math.Max(0, value)), y1 = Y(Math.Min(0, value));
                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x + offset:F1}\" y=\"{y0:F1}\" width=\"{w:F1}\" height=\"{Math.Max(0.5, y1 - y0):F1}\" fill=\"{colour}\"/>");
            }

            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + (i + 0.5) * slot:F1}\" y=\"{height - bottom + 14}\" text-anchor=\"middle\">{Escape(bars[i].Arm)}</text>");
        }

        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left}\" y=\"{height - 14}\" width=\"10\" height=\"10\" fill=\"#1f77b4\"/><text x=\"{left + 14}\" y=\"{height - 5}\">training levels</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left + 120}\" y=\"{height - 14}\" width=\"10\" height=\"10\" fill=\"#ff7f0e\"/><text x=\"{left + 134}\" y=\"{height - 5}\">unseen levels</text>");
        return svg.Append("</svg>").ToString();
    }

    /// <summary>One [C, H, W] state as a grid of coloured cells.</summary>
    private static string State(ReadOnlySpan<float> state, int[] shape)
    {
        int c = shape.Length == 3 ? shape[0] : 1, h = shape.Length == 3 ? shape[1] : 1, w = shape.Length == 3 ? shape[2] : state.Length;
        const int cell = 8;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w * cell + 4}\" height=\"{h * cell}\">");
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                double r = 255, g = 255, b = 255;
                for (int k = 0; k < c; k++)
                {
                    double t = Math.Min(1, Math.Abs(state[(k * h + y) * w + x]));
                    var (pr, pg, pb) = Palette[k % Palette.Length];
                    r += (pr - r) * t;
                    g += (pg - g) * t;
                    b += (pb - b) * t;
                }

                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x * cell}\" y=\"{y * cell}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({(int)r},{(int)g},{(int)b})\"/>");
            }
        }

        return svg.Append("</svg>").ToString();
    }

    private static string Num(JsonNode? node) => node is null ? "" : ((double)node).ToString("F2", CultureInfo.InvariantCulture);

    private static string Escape(string text) => WebUtility.HtmlEncode(text);
}
