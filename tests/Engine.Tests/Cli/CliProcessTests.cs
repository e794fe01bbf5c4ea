using System.Text.Json.Nodes;
using Engine.Tests.Support;

namespace Engine.Tests.Cli;

/// <summary>
/// The built command line in its own process, with its own dependency graph: the in-process CLI
/// tests load the test project's assemblies, so they cannot see a backend assembly that the CLI
/// itself fails to ship (the backends reach Engine.Cli only through direct references).
/// </summary>
public sealed class CliProcessTests
{
    [Fact]
    public void The_built_cli_opens_the_backends_and_trains()
    {
        string root = ExternalProcess.RepoRoot();
        string cli = ExternalProcess.BuiltCli();

        string stdout = ExternalProcess.Run("dotnet",
            $"\"{cli}\" bench-train --family gpt2 --layers 1 --dim 16 --heads 2 --vocab 17 --seq 8 --batch 1 --steps 1 --hash", root,
            TimeSpan.FromMinutes(2));
        JsonNode result = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!;
        Assert.True((double)result["tokens_per_s"]! > 0, stdout);
        Assert.Matches("^[0-9a-f]{64}$", (string)result["state_sha256"]!);
        Assert.Matches("^[0-9a-f]{8}$", (string)result["last_loss_bits"]!);
    }
}
