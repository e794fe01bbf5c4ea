using Engine.IO;
using Engine.Model;
using Engine.Tests.Support;
using Engine.Tools;
using Xunit.Abstractions;

namespace Engine.Tests.Model;

/// <summary>
/// The whole model against PyTorch: fixtures written by tests/fixtures/generate_fixtures.py hold
/// tiny HF checkpoints of each family with the float64 reference logits, loss and every gradient.
/// </summary>
public sealed class PyTorchParityTests(ITestOutputHelper output)
{
    public const double Bound = 1e-4;

    public static TheoryData<string> Fixtures =>
        ["gpt2", "gpt2_prefixed_sharded", "llama_gqa", "qwen2_tied", "qwen2_untied", "qwen2_bf16", "qwen3_tied"];

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Logits_loss_and_every_gradient_match_pytorch(string fixture)
    {
        string dir = FixturePath(fixture);
        using var acc = TestDevices.Cpu();
        LoadedModel loaded = HfCheckpoint.Load(acc, dir);
        using Transformer model = loaded.Model;
        int[][] rows = ForwardBackward.ReadTokens(Path.Combine(dir, "tokens.json"));
        var (loss, logits) = ForwardBackward.Compute(model, rows);

        using var expected = SafeTensorsFile.Open(Path.Combine(dir, "expected.safetensors"));
        var errors = new List<(string Name, double Error)>
        {
            ("logits", Compare.RelativeError(expected.ReadAsFloat32("logits"), logits)),
            ("loss", Compare.RelativeError(expected.ReadAsFloat32("loss"), [loss])),
        };
        var grads = HfCheckpoint.Export(model, model.Grads!).ToDictionary(g => loaded.Prefix + g.Name);
        foreach (string name in loaded.FileTensorNames)
        {
            Assert.True(grads.ContainsKey(name), $"no gradient for {name}");
            errors.Add(("grad." + name, Compare.RelativeError(expected.ReadAsFloat32("grad." + name), grads[name].Data)));
        }

        var worst = errors.MaxBy(e => e.Error);
        output.WriteLine($"{fixture}: worst relative error {worst.Error:E2} ({worst.Name}); loss {loss:F6}");
        foreach (var (name, error) in errors)
        {
            Assert.True(error <= Bound, $"{fixture}: {name} relative error {error:E2} exceeds {Bound:E0}");
        }
    }

    internal static string FixturePath(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);
}
