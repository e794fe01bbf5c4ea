using System.Text.Json.Nodes;
using Engine.Tests.Support;

namespace Engine.Tests.Cli;

/// <summary><c>engine bench-bandwidth</c>: one JSON line per thread count; bad sizes are one-line errors.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class BenchBandwidthCliTests
{
    [Fact]
    public void Prints_one_line_per_thread_count()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench-bandwidth", "--mb", "8", "--threads", "1", "2", "--passes", "2");
        Assert.True(code == 0, stderr);
        string[] lines = stdout.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        for (int i = 0; i < 2; i++)
        {
            JsonNode line = JsonNode.Parse(lines[i])!;
            Assert.Equal(i + 1, (int)line["threads"]!);
            Assert.Equal(8L << 20, (long)line["bytes"]!);
            Assert.True((double)line["best_gb_per_s"]! >= (double)line["median_gb_per_s"]! && (double)line["median_gb_per_s"]! > 0, lines[i]);
        }
    }

    [Theory]
    [InlineData("--mb", "0")]
    [InlineData("--passes", "0")]
    [InlineData("--threads", "0")]
    public void Bad_input_is_a_one_line_error(string option, string value)
    {
        var (code, _, stderr) = CliRunner.Run("bench-bandwidth", "--mb", "2", option, value);
        Assert.Equal(1, code);
        Assert.Single(stderr.Trim().Split('\n'));
    }
}
