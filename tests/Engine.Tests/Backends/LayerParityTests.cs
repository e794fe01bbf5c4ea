using Engine.Tests.Support;
using Engine.Tools;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>Embedding, norms, RoPE, activations and memory ops, forward and backward: every device vs the CPU backend.</summary>
public sealed class LayerParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [Theory]
    [BackendDevices]
    public void Memory_ops_match_the_cpu(string device)
    {
        var ops = new Operands().F("a", TestData.Uniform(1, 41)).F("b", TestData.Uniform(2, 41)).F("c", TestData.Uniform(3, 17));
        Parity.Check(fx, device, output, "Copy/Fill/Zero", ops, (acc, v) =>
        {
            acc.Copy(v["b"].Slice(3, 29), v["a"].Slice(7, 29));
            acc.Fill(v["a"].Slice(1, 13), -2.5f);
            acc.Zero(v["c"].Slice(5, 7));
            acc.Copy(v["b"].Slice(0, 20), v["b"].Slice(6, 20));  // overlapping, within one buffer
            acc.Copy(v["c"].Slice(4, 10), v["c"].Slice(1, 10));
        }, ("a", 0), ("b", 0), ("c", 0));
    }

    [Theory]
    [BackendDevices]
    public void Embedding_forward_and_backward_match_the_cpu(string device)
    {
        const int n = 9, c = 37, vocab = 11, positionsCount = 13;
        int[] tokens = [3, 3, 10, 0, 7, 3, 1, 10, 5];
        int[] positions = TestData.Ints(2, n, positionsCount);
        foreach (bool learned in new[] { true, false })
        {
            var ops = new Operands()
                .Zeros("out", (long)n * c).I("tokens", tokens).I("positions", positions)
                .F("wte", TestData.Uniform(3, vocab * c)).F("wpe", TestData.Uniform(4, positionsCount * c))
                .F("dwte", TestData.Uniform(5, vocab * c)).F("dwpe", TestData.Uniform(6, positionsCount * c))
                .F("dout", TestData.Uniform(7, (long)n * c));
            string name = learned ? "Embedding (wte+wpe)" : "Embedding (wte)";
            Parity.Check(fx, device, output, name, ops, (acc, v) =>
            {
                acc.EmbeddingForward(v["out"], v["tokens"], v["positions"], v["wte"], learned ? v["wpe"] : default, n, c);
                acc.EmbeddingBackward(v["dwte"], learned ? v["dwpe"] : default, v["dout"], v["tokens"], v["positions"], n, c);
            }, ("out", 0), ("dwte", 1e-6), ("dwpe", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void LayerNorm_forward_and_backward_match_the_cpu(string device)
    {
        foreach (var (n, c) in new[] { (1, 7), (5, 33), (40, 64), (67, 300) })
        {
            foreach (bool withBias in new[] { true, false })
            {
                float[] x = Shifted(TestData.Uniform(n + c, (long)n * c, 2f), 0.7f);
                var (mean, rstd) = LayerNormStats(x, n, c, 1e-5f);
                var ops = new Operands()
                    .Zeros("out", (long)n * c).Zeros("mean", n).Zeros("rstd", n).F("x", x)
                    .F("w", TestData.Uniform(11, c)).F("b", TestData.Uniform(12, c))
                    .F("dx", TestData.Uniform(13, (long)n * c)).F("dw", TestData.Uniform(14, c)).F("db", TestData.Uniform(15, c))
                    .F("dout", TestData.Uniform(16, (long)n * c)).F("savedMean", mean).F("savedRstd", rstd);
                Parity.Check(fx, device, output, $"LayerNorm {n}x{c}{(withBias ? " bias" : "")}", ops, (acc, v) =>
                {
                    acc.LayerNormForward(v["out"], v["mean"], v["rstd"], v["x"], v["w"], withBias ? v["b"] : default, n, c, 1e-5f);
                    acc.LayerNormBackward(v["dx"], v["dw"], withBias ? v["db"] : default, v["dout"], v["x"], v["w"], v["savedMean"],
                        v["savedRstd"], n, c);
                }, ("out", 1e-6), ("mean", 1e-6), ("rstd", 1e-6), ("dx", 1e-5), ("dw", 1e-5), ("db", 1e-6));
            }
        }
    }

    [Theory]
    [BackendDevices]
    public void RmsNorm_forward_and_backward_match_the_cpu(string device)
    {
        foreach (var (n, c) in new[] { (1, 7), (5, 33), (40, 64), (67, 300) })
        {
            float[] x = TestData.Uniform(n * 3 + c, (long)n * c, 2f);
            float[] rstd = RmsStats(x, n, c, 1e-6f);
            var ops = new Operands()
                .Zeros("out", (long)n * c).Zeros("rstd", n).F("x", x).F("w", TestData.Uniform(21, c))
                .F("dx", TestData.Uniform(22, (long)n * c)).F("dw", TestData.Uniform(23, c))
                .F("dout", TestData.Uniform(24, (long)n * c)).F("savedRstd", rstd);
            Parity.Check(fx, device, output, $"RmsNorm {n}x{c}", ops, (acc, v) =>
            {
                acc.RmsNormForward(v["out"], v["rstd"], v["x"], v["w"], n, c, 1e-6f);
                acc.RmsNormBackward(v["dx"], v["dw"], v["dout"], v["x"], v["w"], v["savedRstd"], n, c);
            }, ("out", 1e-6), ("rstd", 1e-6), ("dx", 1e-5), ("dw", 1e-5));
        }
    }

    [Theory]
    [BackendDevices]
    public void Rope_forward_and_backward_match_the_cpu(string device)
    {
        foreach (var (n, hq, hkv, d) in new[] { (1, 1, 1, 2), (5, 4, 2, 6), (7, 2, 2, 16) })
        {
            const int tablePositions = 10;
            int stride = (hq + 2 * hkv) * d, half = d / 2;
            var (cos, sin) = Tables(tablePositions, half);
            var ops = new Operands()
                .F("x", TestData.Uniform(31, (long)n * stride)).F("dx", TestData.Uniform(32, (long)n * stride))
                .I("positions", TestData.Ints(33, n, tablePositions)).F("cos", cos).F("sin", sin);
            Parity.Check(fx, device, output, $"Rope {n}x{stride} d{d}", ops, (acc, v) =>
            {
                acc.RopeForward(v["x"], v["positions"], v["cos"], v["sin"], n, stride, 0, hq + hkv, d);
                acc.RopeBackward(v["dx"], v["positions"], v["cos"], v["sin"], n, stride, 1, hq + hkv - 1, d);
            }, ("x", 1e-6), ("dx", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Gelu_forward_and_backward_match_the_cpu(string device)
    {
        const int n = 1001;
        float[] x = TestData.Uniform(41, n, 6f);
        x[0] = -30f;
        x[1] = 30f;
        x[2] = -9.5f;
        x[3] = 0f;
        var ops = new Operands().Zeros("y", n).F("x", x).F("dy", TestData.Uniform(42, n)).Zeros("dx", n);
        Parity.Check(fx, device, output, "Gelu", ops, (acc, v) =>
        {
            acc.GeluForward(v["y"], v["x"], n);
            acc.GeluBackward(v["dx"], v["dy"], v["x"], n);
            acc.GeluBackward(v["dy"], v["dy"], v["x"], n); // in place (dx aliasing dy)
        }, ("y", 1e-6), ("dx", 1e-6), ("dy", 1e-6));
    }

    [Theory]
    [BackendDevices]
    public void SwiGlu_forward_and_backward_match_the_cpu(string device)
    {
        foreach (var (n, f) in new[] { (1, 1), (7, 33), (3, 130) })
        {
            float[] gateUp = TestData.Uniform(51, 2L * n * f, 6f);
            gateUp[0] = -100f;
            var ops = new Operands()
                .Zeros("y", (long)n * f).F("gateUp", gateUp).F("dy", TestData.Uniform(52, (long)n * f)).Zeros("dGateUp", 2L * n * f);
            Parity.Check(fx, device, output, $"SwiGlu {n}x{f}", ops, (acc, v) =>
            {
                acc.SwiGluForward(v["y"], v["gateUp"], n, f);
                acc.SwiGluBackward(v["dGateUp"], v["dy"], v["gateUp"], n, f);
            }, ("y", 1e-6), ("dGateUp", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Add_and_scale_match_the_cpu(string device)
    {
        const int n = 777;
        var ops = new Operands().F("a", TestData.Uniform(61, n)).F("b", TestData.Uniform(62, n)).Zeros("y", n);
        Parity.Check(fx, device, output, "Add/Scale", ops, (acc, v) =>
        {
            acc.Add(v["y"], v["a"], v["b"], n);
            acc.Add(v["a"], v["a"], v["b"], n); // y aliasing a
            acc.Scale(v["b"], -0.375f, n);
        }, ("y", 0), ("a", 0), ("b", 0));
    }

    internal static float[] Shifted(float[] x, float shift)
    {
        for (int i = 0; i < x.Length; i++)
        {
            x[i] += shift;
        }

        return x;
    }

    internal static (float[] Mean, float[] Rstd) LayerNormStats(float[] x, int n, int c, float eps)
    {
        var mean = new float[n];
        var rstd = new float[n];
        for (int r = 0; r < n; r++)
        {
            double s = 0, q = 0;
            for (int j = 0; j < c; j++)
            {
                s += x[r * c + j];
            }

            double m = s / c;
            for (int j = 0; j < c; j++)
            {
                double d = x[r * c + j] - m;
                q += d * d;
            }

            mean[r] = (float)m;
            rstd[r] = (float)(1 / Math.Sqrt(q / c + eps));
        }

        return (mean, rstd);
    }

    internal static float[] RmsStats(float[] x, int n, int c, float eps)
    {
        var rstd = new float[n];
        for (int r = 0; r < n; r++)
        {
            double q = 0;
            for (int j = 0; j < c; j++)
            {
                q += (double)x[r * c + j] * x[r * c + j];
            }

            rstd[r] = (float)(1 / Math.Sqrt(q / c + eps));
        }

        return rstd;
    }

    internal static (float[] Cos, float[] Sin) Tables(int positions, int half) => Engine.Tools.BackendCheck.RopeTables(positions, half);
}
