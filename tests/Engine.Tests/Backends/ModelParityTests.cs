using Engine.Core;
using Engine.Generation;
using Engine.IO;
using Engine.Model;
using Engine.Tests.Model;
using Engine.Tests.Support;
using Engine.Tools;
using Engine.Training;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>
/// Whole-model parity: train steps of a tiny GPT-2 and a tiny Qwen2 (GQA, RoPE, RMSNorm, SwiGLU)
/// and generation runs, on every device vs the CPU backend through the unchanged model, optimizer
/// and generator code.
/// </summary>
public sealed class ModelParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    public static TheoryData<string> Families => ["gpt2", "llama"];

    private static ModelConfig Config(string family) => family switch
    {
        "gpt2" => ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40),
        _ => ModelConfig.LlamaFamily(ModelFamily.Qwen2, vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 40,
            maxPositions: 40, tied: false) with { EosTokenIds = [0] },
    };

    [Theory]
    [BackendDevices]
    public void Train_steps_match_the_cpu(string device)
    {
        foreach (string family in new[] { "gpt2", "llama" })
        {
            const int batch = 3, seq = 19, steps = 3;
            ModelConfig config = Config(family);
            using var cpu = new SyntheticBenchmark(fx.Cpu, config, batch, seq, seed: 5);
            using var dev = new SyntheticBenchmark(fx.Device(device), config, batch, seq, seed: 5);
            for (int step = 1; step <= steps; step++)
            {
                float lossCpu = cpu.Step();
                float lossDev = dev.Step();
                double lossErr = Math.Abs(lossDev - lossCpu) / Math.Abs(lossCpu);
                Parity.Record(output, device, $"TrainStep {family} step {step}.loss", lossErr, 1e-5);
                Assert.True(lossErr <= 1e-5, $"{family} step {step}: loss {lossDev} vs {lossCpu} on the CPU");

                // Gradients of this step (computed before the update), then the updated parameters.
                Parity.Close(output, device, $"TrainStep {family} step {step}.grads",
                    fx.Cpu.ToArray(cpu.Model.Grads!.All), dev.Model.Acc.ToArray(dev.Model.Grads!.All), 1e-4);
                Parity.Close(output, device, $"TrainStep {family} step {step}.params",
                    fx.Cpu.ToArray(cpu.Model.Params.All), dev.Model.Acc.ToArray(dev.Model.Params.All), 1e-5);
            }
        }
    }

    [Theory]
    [BackendDevices]
    public void Generation_matches_the_cpu(string device)
    {
        foreach (string family in new[] { "gpt2", "llama" })
        {
            using var cpuModel = new Transformer(fx.Cpu, Config(family));
            using var devModel = new Transformer(fx.Device(device), Config(family));
            ModelInit.Initialize(cpuModel, 9, std: 0.5f);
            ModelInit.Initialize(devModel, 9, std: 0.5f);
            int[][] prompts = [[5, 9, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [40]];
            foreach (var (name, sampling) in new[]
                     {
                         ("greedy", new SamplingOptions { MaxNewTokens = 10, Temperature = 0f }),
                         ("top-p 0.9", new SamplingOptions { MaxNewTokens = 10, Seed = 3, Temperature = 0.8f, TopP = 0.9f }),
                         ("top-k 5", new SamplingOptions { MaxNewTokens = 10, Seed = 4, TopK = 5 }),
                     })
            {
                var cpuRun = Generate(cpuModel, prompts, sampling);
                var devRun = Generate(devModel, prompts, sampling);
                Parity.Equal(output, device, $"Generate {family} {name}.tokens", cpuRun.Tokens, devRun.Tokens);
                Parity.Close(output, device, $"Generate {family} {name}.policyLogp", cpuRun.PolicyLogp, devRun.PolicyLogp, 5e-5);
                Parity.Close(output, device, $"Generate {family} {name}.sampleLogp", cpuRun.SampleLogp, devRun.SampleLogp, 5e-5);
            }
        }
    }

    [Theory]
    [BackendDevices]
    public void Hugging_face_fixtures_match_the_cpu_and_pytorch(string device)
    {
        foreach (string fixture in new[] { "gpt2", "llama_gqa" })
        {
            string dir = PyTorchParityTests.FixturePath(fixture);
            int[][] rows = ForwardBackward.ReadTokens(Path.Combine(dir, "tokens.json"));
            var cpu = ForwardBackwardOn(fx.Cpu, dir, rows);
            var dev = ForwardBackwardOn(fx.Device(device), dir, rows);
            using var expected = SafeTensorsFile.Open(Path.Combine(dir, "expected.safetensors"));
            Parity.Close(output, device, $"ForwardBackward {fixture}.logits", cpu.Logits, dev.Logits, 1e-5);
            Parity.Close(output, device, $"ForwardBackward {fixture}.loss", [cpu.Loss], [dev.Loss], 1e-6);
            Parity.Close(output, device, $"ForwardBackward {fixture}.grads", cpu.Grads, dev.Grads, 1e-5);

            // And the device against PyTorch's float64 reference, with the CPU test's bound.
            double vsTorch = Math.Max(Compare.RelativeError(expected.ReadAsFloat32("logits"), dev.Logits),
                Compare.RelativeError(expected.ReadAsFloat32("loss"), [dev.Loss]));
            Parity.Record(output, device, $"ForwardBackward {fixture} vs PyTorch.logits+loss", vsTorch, PyTorchParityTests.Bound);
            Assert.True(vsTorch <= PyTorchParityTests.Bound, $"{fixture} on {device}: {vsTorch:E2} from PyTorch");
        }
    }

    private static (float Loss, float[] Logits, float[] Grads) ForwardBackwardOn(Accelerator acc, string dir, int[][] rows)
    {
        LoadedModel loaded = HfCheckpoint.Load(acc, dir);
        using Transformer model = loaded.Model;
        var (loss, logits) = ForwardBackward.Compute(model, rows);
        return (loss, logits, acc.ToArray(model.Grads!.All));
    }

    private static (int[] Tokens, float[] PolicyLogp, float[] SampleLogp) Generate(Transformer model, int[][] prompts, SamplingOptions sampling)
    {
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = 4, BlockSize = 8 });
        var groups = gen.Generate(prompts, 2, sampling);
        var samples = groups.SelectMany(g => g.Samples).ToList();
        return ([.. samples.SelectMany(s => s.TokenIds.Append(-1))],
            [.. samples.SelectMany(s => s.PolicyLogProbs)],
            [.. samples.SelectMany(s => s.SampleLogProbs)]);
    }
}
