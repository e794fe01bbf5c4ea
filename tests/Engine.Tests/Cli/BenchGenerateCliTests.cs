using System.Text.Json.Nodes;
using Engine.Model;
using Engine.Tests.Support;

namespace Engine.Tests.Cli;

/// <summary><c>engine bench-generate --save</c>: the checkpoint holds the very weights the benchmark timed.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class BenchGenerateCliTests : IDisposable
{
    private readonly TempDir temp = new();

    [Fact]
    public void Results_hash_follows_the_generated_tokens()
    {
        // The hash of seed 1's tokens and log-probs: the same twice for one model, another for another model.
        string Hash(string layers)
        {
            var (code, stdout, stderr) = CliRunner.Run("bench-generate", "--family", "gpt2", "--layers", layers, "--dim", "32", "--heads", "2",
                "--vocab", "40", "--batch", "2", "--prompt-len", "3", "--new-tokens", "4", "--repeats", "1", "--device", "cpu");
            Assert.True(code == 0, stderr);
            return (string)JsonNode.Parse(stdout.Trim())!["results_hash"]!;
        }

        string first = Hash("1");
        Assert.Matches("^[0-9a-f]{16}$", first);
        Assert.Equal(first, Hash("1"));
        Assert.NotEqual(first, Hash("2"));
    }

    [Fact]
    public void Save_writes_the_benchmarked_random_model()
    {
        string directory = temp.File("model");
        var (code, stdout, stderr) = CliRunner.Run("bench-generate", "--family", "gpt2", "--layers", "1", "--dim", "32", "--heads", "2",
            "--vocab", "40", "--batch", "2", "--prompt-len", "3", "--new-tokens", "4", "--repeats", "1", "--device", "cpu", "--save", directory);
        Assert.True(code == 0, stderr);
        Assert.True((double)JsonNode.Parse(stdout.Trim())!["decode_tokens_per_s"]! > 0, stdout);

        // The benchmark's model: the command's shape with prompt + new tokens + 1 positions, initialized with seed 1.
        using var acc = TestDevices.Cpu();
        using var expected = new Transformer(acc, ModelConfig.Gpt2(vocab: 40, dim: 32, layers: 1, heads: 2, maxPositions: 3 + 4 + 1));
        ModelInit.Initialize(expected, 1);
        LoadedModel saved = HfCheckpoint.Load(acc, directory);
        using Transformer model = saved.Model;
        Assert.Equal(expected.Config.MaxPositions, model.Config.MaxPositions);
        Assert.Equal(acc.ToArray(expected.Params.All), acc.ToArray(model.Params.All));
    }

    public void Dispose() => temp.Dispose();
}
