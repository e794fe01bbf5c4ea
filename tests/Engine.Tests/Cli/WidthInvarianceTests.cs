using System.Security.Cryptography;
using Engine.Tests.Model;
using Engine.Tests.Support;

namespace Engine.Tests.Cli;

/// <summary>
/// The CPU backend gives the same bits whatever vector width the machine offers: the built CLI runs
/// in child processes with the runtime's AVX-512, then AVX2 (and with it Vector256 and FMA) turned
/// off, and every output file must hash the same as the default run's. On a machine without
/// AVX-512 the first setting changes nothing; the comparison still holds for the others.
/// </summary>
public sealed class WidthInvarianceTests : IDisposable
{
    /// <summary>Each setting with the variables that make it (none: whatever the machine has).</summary>
    private static readonly (string Name, Dictionary<string, string> Environment)[] Widths =
    [
        ("default", new Dictionary<string, string>()),
        ("no AVX-512", new Dictionary<string, string> { ["DOTNET_EnableAVX512"] = "0" }),
        ("no AVX2", new Dictionary<string, string> { ["DOTNET_EnableAVX2"] = "0" }),
    ];

    private readonly TempDir temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Forward_backward_gives_the_same_bits_in_every_width()
    {
        // C = 24 (16 + 8), F = 44, V = 61: vector bodies and tails in RMSNorm, RoPE, SwiGLU, GQA
        // attention and the LM head's log-softmax (the demo below covers LayerNorm and GELU).
        string model = PyTorchParityTests.FixturePath("llama_gqa");
        AssertSameBits(width => $"forward-backward --device cpu --model \"{model}\" --tokens \"{Path.Combine(model, "tokens.json")}\" --out \"{Path.Combine(width, "out.safetensors")}\"");
    }

    [Fact]
    public void Sft_decode_and_rl_steps_give_the_same_checkpoints_in_every_width()
    {
        // The demo's pipeline cut to two SFT steps, one DAPO step (its rollouts are decodes) and the
        // evaluations; C = 104 (16 * 6 + 8) so the AVX-512 vectors leave a tail that AVX2's do not.
        AssertSameBits(width => $"demo --device cpu --out \"{width}\" --set model.dim=104 --set model.heads=2 --set sft.steps=2 "
            + "--set sft.batch_size=8 --set sft.eval_examples=4 --set rl.steps=1 --set rl.eval_every=1 --set rl.eval_examples=2 "
            + "--set rl.prompts_per_step=2 --set rl.samples_per_prompt=4");
    }

    /// <summary>Runs the command once per width, each in its own folder, and compares the hashes of the files the state lives in.</summary>
    private void AssertSameBits(Func<string, string> arguments)
    {
        string cli = ExternalProcess.BuiltCli();
        Dictionary<string, string>? expected = null;
        foreach (var (name, environment) in Widths)
        {
            string folder = Path.Combine(temp.Path, name.Replace(' ', '-'));
            Directory.CreateDirectory(folder);
            ExternalProcess.Run("dotnet", $"\"{cli}\" {arguments(folder)}", ExternalProcess.RepoRoot(), TimeSpan.FromMinutes(3), environment);
            Dictionary<string, string> hashes = Directory.EnumerateFiles(folder, "*.safetensors", SearchOption.AllDirectories)
                .ToDictionary(f => Path.GetRelativePath(folder, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));
            Assert.NotEmpty(hashes);
            if (expected is null)
            {
                expected = hashes;
                continue;
            }

            Assert.Equal(expected.Keys.Order(), hashes.Keys.Order());
            foreach (var (file, hash) in expected)
            {
                Assert.True(hash == hashes[file], $"{file} differs with {name} from the default run");
            }
        }
    }
}
