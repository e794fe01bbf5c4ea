using Engine.Core;
using Engine.Tools;
using Engine.Kernels.Gpu;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>The LM head fused with log-softmax (forward, backward, fused), token sampling and row gather: every device vs the CPU backend.</summary>
public sealed class HeadParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    /// <summary>(N, C, V, rows per block): one block; many small blocks; a vocabulary wider than a work-group.</summary>
    private static readonly (int N, int C, int V, int BlockRows)[] Shapes = [(9, 24, 50, 0), (9, 24, 50, 2), (5, 17, 300, 0)];

    [Theory]
    [BackendDevices]
    public void Token_log_prob_forward_and_backward_match_the_cpu(string device)
    {
        foreach (var (n, c, v, blockRows) in Shapes)
        {
            int[] targets = TestData.Ints(1, n, v);
            targets[1] = -1; // skipped rows
            targets[n - 1] = -3;
            var ops = new Operands()
                .F("x", TestData.Uniform(2, (long)n * c, 2f)).F("w", TestData.Uniform(3, (long)v * c)).I("targets", targets)
                .Zeros("logp", n).Zeros("entropy", n)
                .F("dx", TestData.Uniform(4, (long)n * c)).F("dw", TestData.Uniform(5, (long)v * c))
                .F("dlogp", TestData.Uniform(6, n)).F("dentropy", TestData.Uniform(7, n))
                .Zeros("logp2", n).F("dx2", TestData.Uniform(8, (long)n * c)).F("dw2", TestData.Uniform(9, (long)v * c));
            string name = $"TokenLogProb n{n} c{c} v{v}{(blockRows > 0 ? $" {blockRows}-row blocks" : "")}";
            Parity.Check(fx, device, output, name, ops, (acc, t) =>
            {
                SetBlockRows(acc, blockRows, v);
                acc.TokenLogProbForward(t["logp"], t["entropy"], t["x"], t["w"], t["targets"], n, c, v);
                acc.TokenLogProbBackward(t["dx"], t["dw"], t["dlogp"], t["dentropy"], t["x"], t["w"], t["targets"], n, c, v);
                acc.TokenLogProbForwardBackward(t["logp2"], t["dx2"], t["dw2"], t["dlogp"], t["x"], t["w"], t["targets"], n, c, v);
                SetBlockRows(acc, 0, v);
            }, ("logp", 1e-6), ("entropy", 1e-6), ("dx", 1e-5), ("dw", 1e-6), ("logp2", 1e-6), ("dx2", 1e-5), ("dw2", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Sampling_matches_the_cpu(string device)
    {
        foreach (int v in new[] { 37, 300 })
        {
            const int s = 8;
            float[] logits = TestData.Uniform(11 + v, (long)s * v, 3f);
            logits[4 * v + 5] = 9f; // row 4 (greedy): a tie at the maximum, the first index wins
            logits[4 * v + 9] = 9f;
            float[] temperatures = [0f, 1f, 0.7f, 1.3f, 0f, 1f, 0.9f, 2f];
            int[] topK = [0, 5, 0, 20, 0, 1, 3, 0];
            float[] topP = [1f, 1f, 0.9f, 0.8f, 1f, 0.5f, 1f, 0.3f];
            var ops = new Operands()
                .I("tokens", new int[s]).Zeros("sampleLogp", s).Zeros("policyLogp", s).F("logits", logits)
                .F("uniforms", [0.5f, 0.1f, 0.9f, 0.33f, 0.7f, 0.99f, 0.01f, 0.6f]).F("temperatures", temperatures)
                .I("topK", topK).F("topP", topP);
            var (cpu, dev) = Parity.Run(fx, device, ops, (acc, t) => acc.SampleTokens(t["tokens"], t["sampleLogp"], t["policyLogp"],
                t["logits"], t["uniforms"], t["temperatures"], t["topK"], t["topP"], s, v));
            Parity.Equal(output, device, $"SampleTokens v{v}.tokens", cpu.Ints["tokens"], dev.Ints["tokens"]);
            Parity.Close(output, device, $"SampleTokens v{v}.sampleLogp", cpu["sampleLogp"], dev["sampleLogp"], 1e-5);
            Parity.Close(output, device, $"SampleTokens v{v}.policyLogp", cpu["policyLogp"], dev["policyLogp"], 1e-6);
        }
    }

    [Theory]
    [BackendDevices]
    public void Gather_rows_matches_the_cpu(string device)
    {
        const int width = 13, n = 7;
        var ops = new Operands().Zeros("dst", n * width).F("src", TestData.Uniform(21, 10 * width)).I("rows", [9, 0, 3, 3, 5, 1, 9]);
        Parity.Check(fx, device, output, "GatherRows", ops, (acc, t) => acc.GatherRows(t["dst"], t["src"], t["rows"], n, width), ("dst", 0));
    }

    [Theory]
    [BackendDevices]
    public void Behaviour_cloning_loss_matches_the_cpu(string device)
    {
        // A few actions (the environments' 4-5) and rows over a work-group; a wide row.
        foreach (var (n, a) in new[] { (300, 5), (3, 700) })
        {
            foreach (BcLoss kind in new[] { BcLoss.Mse, BcLoss.Mae, BcLoss.CrossEntropy })
            {
                var ops = new Operands().F("logits", TestData.Uniform(31 + a, (long)n * a, 3f)).I("actions", TestData.Ints(32 + a, n, a))
                    .F("dlogits", TestData.Uniform(33, (long)n * a)).Zeros("loss", 1);
                Parity.Check(fx, device, output, $"BehaviourCloningLoss {kind} n{n} a{a}", ops,
                    (acc, t) => acc.BehaviourCloningLoss(t["dlogits"], t["loss"], t["logits"], t["actions"], kind, n, a), ("dlogits", 1e-5), ("loss", 1e-5));
            }
        }
    }

    /// <summary>Forces LM-head blocks of <paramref name="rows"/> rows on backends that expose the knob (0: default).</summary>
    private static void SetBlockRows(Core.Accelerator acc, int rows, int v)
    {
        long bytes = rows > 0 ? 4L * v * rows : 32L << 20;
        if (acc is global::Engine.Kernels.Cpu.CpuAccelerator cpu)
        {
            cpu.HeadBlockBytes = rows > 0 ? bytes : 16L << 20;
        }
        else if (acc is GpuAccelerator gpu)
        {
            gpu.HeadBlockBytes = bytes;
        }
    }
}
