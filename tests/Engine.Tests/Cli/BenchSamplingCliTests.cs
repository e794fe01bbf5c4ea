using System.Text.Json.Nodes;

namespace Engine.Tests.Cli;

/// <summary><c>engine bench-sampling</c>: one JSON line per sampler, the same completions under a smaller budget, clear errors.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class BenchSamplingCliTests
{
    private static readonly string[] Shape =
        ["bench-sampling", "--family", "gpt2", "--layers", "1", "--dim", "32", "--heads", "2", "--vocab", "40", "--samples-per-prompt", "8",
            "--prompt-len", "5", "--new-tokens", "48", "--eos-bias", "1.5", "--prefix-tokens", "4", "--device", "cpu"];

    private static JsonObject Run(params string[] extra)
    {
        var (code, stdout, stderr) = CliRunner.Run([.. Shape, .. extra]);
        Assert.True(code == 0, stderr);
        return JsonNode.Parse(stdout.Trim())!.AsObject();
    }

    [Fact]
    public void Infinite_sampling_at_a_quarter_of_fulls_budget_gives_fulls_completions()
    {
        JsonObject full = Run("--sampler", "full");
        double quarter = (long)full["kv_budget_bytes"]! / 4.0 / (1 << 20);
        JsonObject infinite = Run("--sampler", "infinite", "--kv-budget-mb", quarter.ToString(System.Globalization.CultureInfo.InvariantCulture));
        JsonObject micro = Run("--sampler", "micro", "--kv-budget-mb", quarter.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal((string)full["completions_sha256"]!, (string)infinite["completions_sha256"]!);
        Assert.Equal((string)full["completions_sha256"]!, (string)micro["completions_sha256"]!);
        Assert.True((long)infinite["peak_kv_committed_bytes"]! * 2 <= (long)full["peak_kv_committed_bytes"]!, infinite.ToJsonString());
        Assert.True((int)full["length_min"]! < (int)full["length_max"]!, $"lengths must vary: {full.ToJsonString()}");
        Assert.True((int)infinite["decode_steps"]! <= (int)micro["decode_steps"]!, $"{infinite.ToJsonString()} vs {micro.ToJsonString()}");

        // Waiting probes' KV freed and recomputed (the default) or kept: the same completions.
        JsonObject kept = Run("--sampler", "infinite", "--keep-probe-kv", "--kv-budget-mb", quarter.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal((string)full["completions_sha256"]!, (string)kept["completions_sha256"]!);
        Assert.True((long)infinite["recomputed_tokens"]! > 0, infinite.ToJsonString());
        Assert.Equal(0L, (long)kept["recomputed_tokens"]!);
    }

    [Fact]
    public void Several_samplers_in_one_process_give_one_median_line_each_with_fulls_completions()
    {
        JsonObject alone = Run("--sampler", "full");
        var (code, stdout, stderr) = CliRunner.Run([.. Shape, "--sampler", "full,micro,infinite", "--repeats", "3", "--kv-budget-mb",
            ((long)alone["kv_budget_bytes"]! / 4.0 / (1 << 20)).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, stderr);
        JsonObject[] lines = [.. stdout.Trim().Split('\n').Select(l => JsonNode.Parse(l)!.AsObject())];
        Assert.Equal(["full", "micro", "infinite"], lines.Select(l => (string)l["sampler"]!));
        Assert.All(lines, l => Assert.Equal((string)alone["completions_sha256"]!, (string)l["completions_sha256"]!));
        Assert.Equal((long)alone["kv_budget_bytes"]!, (long)lines[0]["kv_budget_bytes"]!); // full keeps the KV it needs
        Assert.True((long)lines[1]["kv_budget_bytes"]! * 4 <= (long)alone["kv_budget_bytes"]! + 4, lines[1].ToJsonString());
        Assert.All(lines, l =>
        {
            Assert.Equal(3, (int)l["repeats"]!);
            Assert.InRange((double)l["wall_ms"]!, (double)l["wall_ms_min"]!, (double)l["wall_ms_max"]!);
        });
    }

    [Fact]
    public void Bad_settings_are_one_line_errors()
    {
        var (code, _, stderr) = CliRunner.Run([.. Shape, "--sampler", "fastest"]);
        Assert.Equal(1, code);
        Assert.Contains("--sampler must be full, micro, continuous or infinite, got 'fastest'", stderr, StringComparison.Ordinal);
        (code, _, stderr) = CliRunner.Run([.. Shape, "--sampler", "full", "--kv-budget-mb", "0.01"]);
        Assert.Equal(1, code);
        Assert.Contains("'full' sampler", stderr, StringComparison.Ordinal);
        (code, _, stderr) = CliRunner.Run([.. Shape, "--sampler", "full,micro", "--repeats", "0"]);
        Assert.Equal(1, code);
        Assert.Contains("--repeats must be at least 1, got 0", stderr, StringComparison.Ordinal);
    }
}
