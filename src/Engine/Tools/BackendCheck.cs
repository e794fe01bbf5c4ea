using System.Globalization;
using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Training;
using Engine.Util;

namespace Engine.Tools;

/// <summary>
/// The backend check behind <c>engine check-backends</c> (after ggml's test-backend-ops): each op of
/// the contract on a device against the CPU backend, on shapes chosen to hit tile edges, then whole
/// train steps and generation through the unchanged model code. It is the parity suite for a
/// machine that has the published CLI but no .NET SDK (a lent GPU); the xunit parity suite
/// (tests/Engine.Tests/Backends) remains the CI version. Every operand sits in a buffer with guard
/// values before and after its view, so a write outside the view is reported as a failure.
/// </summary>
internal static class BackendCheck
{
    /// <summary>One compared output: normalised max error (max |device - cpu| / max |cpu|) against its bound.</summary>
    public sealed record Row(string Op, string Output, double Error, double Bound)
    {
        /// <summary>True when the error is within the bound (NaN where the CPU has none fails).</summary>
        public bool Passed => Error <= Bound;

        /// <inheritdoc />
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"{(Passed ? "ok  " : "FAIL")} {Op + "." + Output,-52} rel.err {Error:E2} (bound {Bound:E0})");
    }

    /// <summary>
    /// Runs every check of <paramref name="device"/> against <paramref name="cpu"/>, reporting each
    /// row as it is measured. <paramref name="boundScale"/> multiplies every bound (for a device whose
    /// GEMMs run at reduced precision, e.g. TF32: the errors are then measured, not hidden).
    /// </summary>
    public static IReadOnlyList<Row> Run(Accelerator cpu, Accelerator device, double boundScale, Action<Row> report)
    {
        var rows = new List<Row>();
        var checker = new Checker(cpu, device, boundScale, row =>
        {
            rows.Add(row);
            report(row);
        });
        OpChecks(checker);
        ModelChecks(checker);
        return rows;
    }

    private static void OpChecks(Checker c)
    {
        c.Check("Copy/Fill/Zero", new Operands().F("a", Uniform(1, 41)).F("b", Uniform(2, 41)).F("c", Uniform(3, 17)), (acc, v) =>
        {
            acc.Copy(v["b"].Slice(3, 29), v["a"].Slice(7, 29));
            acc.Fill(v["a"].Slice(1, 13), -2.5f);
            acc.Zero(v["c"].Slice(5, 7));
            acc.Copy(v["b"].Slice(0, 20), v["b"].Slice(6, 20));
        }, ("a", 0), ("b", 0), ("c", 0));

        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 13, 5), (3, 70, 33), (65, 33, 70), (130, 67, 129), (256, 192, 320) })
        {
            foreach (var (transA, transB, alpha, beta) in new[] { (false, false, 1f, 0f), (false, true, 0.5f, 1f), (true, false, 1f, 1f), (true, true, -1f, 0.25f) })
            {
                var ops = new Operands().F("c", Uniform(4, (long)m * n)).F("a", Uniform(5, (long)m * k)).F("b", Uniform(6, (long)k * n)).F("bias", Uniform(7, n));
                c.Check($"Gemm {(transA ? "T" : "N")}{(transB ? "T" : "N")} {m}x{n}x{k}", ops,
                    (acc, v) => acc.Gemm(v["c"], v["a"], v["b"], m, n, k, transA, transB, alpha, beta, v["bias"]), ("c", 1e-5));
            }
        }

        foreach (var (rows, cols) in new[] { (1, 1), (33, 7), (97, 65) })
        {
            c.Check($"BiasBackward {rows}x{cols}", new Operands().F("db", Uniform(8, cols)).F("dy", Uniform(9, (long)rows * cols)),
                (acc, v) => acc.BiasBackward(v["db"], v["dy"], rows, cols), ("db", 1e-5));
        }

        const int en = 9, ec = 37, vocab = 11, positions = 13;
        c.Check("Embedding", new Operands().Zeros("out", en * ec).I("tokens", [3, 3, 10, 0, 7, 3, 1, 10, 5]).I("positions", [0, 1, 2, 12, 4, 5, 6, 7, 3])
            .F("wte", Uniform(10, vocab * ec)).F("wpe", Uniform(11, positions * ec)).F("dwte", Uniform(12, vocab * ec))
            .F("dwpe", Uniform(13, positions * ec)).F("dout", Uniform(14, en * ec)), (acc, v) =>
        {
            acc.EmbeddingForward(v["out"], v["tokens"], v["positions"], v["wte"], v["wpe"], en, ec);
            acc.EmbeddingBackward(v["dwte"], v["dwpe"], v["dout"], v["tokens"], v["positions"], en, ec);
        }, ("out", 0), ("dwte", 1e-6), ("dwpe", 1e-6));

        foreach (var (n, width) in new[] { (1, 7), (40, 64), (67, 300) })
        {
            float[] x = Uniform(15, (long)n * width, 2f);
            var ops = new Operands().Zeros("out", (long)n * width).Zeros("mean", n).Zeros("rstd", n).F("x", x).F("w", Uniform(16, width))
                .F("b", Uniform(17, width)).F("dx", Uniform(18, (long)n * width)).F("dw", Uniform(19, width)).F("db", Uniform(20, width))
                .F("dout", Uniform(21, (long)n * width));
            c.Check($"LayerNorm {n}x{width}", ops, (acc, v) =>
            {
                acc.LayerNormForward(v["out"], v["mean"], v["rstd"], v["x"], v["w"], v["b"], n, width, 1e-5f);
                acc.LayerNormBackward(v["dx"], v["dw"], v["db"], v["dout"], v["x"], v["w"], v["mean"], v["rstd"], n, width);
            }, ("out", 1e-5), ("mean", 1e-6), ("rstd", 1e-5), ("dx", 1e-5), ("dw", 1e-5), ("db", 1e-6));
            var rms = new Operands().Zeros("out", (long)n * width).Zeros("rstd", n).F("x", x).F("w", Uniform(22, width))
                .F("dx", Uniform(23, (long)n * width)).F("dw", Uniform(24, width)).F("dout", Uniform(25, (long)n * width));
            c.Check($"RmsNorm {n}x{width}", rms, (acc, v) =>
            {
                acc.RmsNormForward(v["out"], v["rstd"], v["x"], v["w"], n, width, 1e-6f);
                acc.RmsNormBackward(v["dx"], v["dw"], v["dout"], v["x"], v["w"], v["rstd"], n, width);
            }, ("out", 1e-5), ("rstd", 1e-5), ("dx", 1e-5), ("dw", 1e-5));
        }

        foreach (var (n, hq, hkv, d) in new[] { (1, 1, 1, 2), (5, 4, 2, 6), (7, 2, 2, 16) })
        {
            const int tablePositions = 10;
            int stride = (hq + (2 * hkv)) * d, half = d / 2;
            var (cos, sin) = RopeTables(tablePositions, half);
            var ops = new Operands().F("x", Uniform(26, (long)n * stride)).F("dx", Uniform(27, (long)n * stride))
                .I("positions", Ints(28, n, tablePositions)).F("cos", cos).F("sin", sin);
            c.Check($"Rope {n}x{stride} d{d}", ops, (acc, v) =>
            {
                acc.RopeForward(v["x"], v["positions"], v["cos"], v["sin"], n, stride, 0, hq + hkv, d);
                acc.RopeBackward(v["dx"], v["positions"], v["cos"], v["sin"], n, stride, 1, hq + hkv - 1, d);
            }, ("x", 1e-6), ("dx", 1e-6));
        }

        const int gn = 1001;
        float[] gx = Uniform(29, gn, 6f);
        gx[0] = -30f;
        gx[1] = 30f;
        c.Check("Gelu", new Operands().Zeros("y", gn).F("x", gx).F("dy", Uniform(30, gn)).Zeros("dx", gn), (acc, v) =>
        {
            acc.GeluForward(v["y"], v["x"], gn);
            acc.GeluBackward(v["dx"], v["dy"], v["x"], gn);
        }, ("y", 1e-6), ("dx", 1e-6));

        foreach (var (n, f) in new[] { (1, 1), (7, 33), (3, 130) })
        {
            c.Check($"SwiGlu {n}x{f}", new Operands().Zeros("y", (long)n * f).F("gateUp", Uniform(31, 2L * n * f, 6f)).F("dy", Uniform(32, (long)n * f))
                .Zeros("dGateUp", 2L * n * f), (acc, v) =>
            {
                acc.SwiGluForward(v["y"], v["gateUp"], n, f);
                acc.SwiGluBackward(v["dGateUp"], v["dy"], v["gateUp"], n, f);
            }, ("y", 1e-6), ("dGateUp", 1e-6));
        }

        const int an = 777;
        c.Check("Add/Scale", new Operands().F("a", Uniform(33, an)).F("b", Uniform(34, an)).Zeros("y", an), (acc, v) =>
        {
            acc.Add(v["y"], v["a"], v["b"], an);
            acc.Scale(v["b"], -0.375f, an);
        }, ("y", 0), ("b", 0));
        c.Check("SumOfSquares", new Operands().F("x", Uniform(35, 100_003)).Zeros("s", 1),
            (acc, v) => acc.SumOfSquares(v["s"], v["x"], 100_003), ("s", 1e-5));

        foreach (var (b, t, hq, hkv, d) in new[] { (1, 1, 1, 1, 8), (2, 7, 2, 1, 6), (1, 45, 4, 2, 8), (2, 70, 2, 2, 64) })
        {
            long rows = (long)b * t;
            float scale = 1f / MathF.Sqrt(d);
            float[] qkv = Uniform(36, rows * (hq + (2 * hkv)) * d, 2f);
            var ops = new Operands().Zeros("out", rows * hq * d).Zeros("lse", rows * hq).F("qkv", qkv)
                .F("dqkv", Uniform(37, qkv.Length)).F("dout", Uniform(38, rows * hq * d));
            c.Check($"Attention b{b} t{t} h{hq}/{hkv} d{d}", ops, (acc, v) =>
            {
                acc.AttentionForward(v["out"], v["lse"], v["qkv"], b, t, hq, hkv, d, scale);
                acc.AttentionBackward(v["dqkv"], v["dout"], v["qkv"], v["out"], v["lse"], b, t, hq, hkv, d, scale);
            }, ("out", 1e-5), ("lse", 1e-6), ("dqkv", 1e-5));
        }

        PagedAttention(c);
    }

    private static void PagedAttention(Checker c)
    {
        foreach (var (blockSize, maxBlocks, hq, hkv, d, rowPos) in new[]
                 {
                     (4, 3, 4, 2, 8, new[] { 0, 11, 6, 1, 10, 5 }),
                     (16, 6, 2, 1, 64, new[] { 95, 0, 70, 65, 33 }),
                 })
        {
            const int layers = 2, layer = 1, sequences = 2;
            int n = rowPos.Length; // row i belongs to sequence i % 2; positions are distinct within a sequence
            var shape = new KvCacheShape((sequences * maxBlocks) + 1, layers, hkv, d, blockSize);
            var tables = new int[sequences * maxBlocks];
            for (int s = 0; s < sequences; s++)
            {
                for (int k = 0; k < maxBlocks; k++)
                {
                    tables[(s * maxBlocks) + k] = 1 + s + (2 * k);
                }
            }

            int[] rowSeq = new int[n], slots = new int[n];
            for (int i = 0; i < n; i++)
            {
                rowSeq[i] = i % sequences;
                slots[i] = (tables[(rowSeq[i] * maxBlocks) + (rowPos[i] / blockSize)] * blockSize) + (rowPos[i] % blockSize);
            }

            var ops = new Operands().F("cache", Uniform(39, shape.Length)).F("qkv", Uniform(40, (long)n * (hq + (2 * hkv)) * d, 2f))
                .I("slots", slots).I("tables", tables).I("rowSeq", rowSeq).I("rowPos", rowPos).Zeros("out", (long)n * hq * d);
            c.Check($"KvCacheWrite+PagedAttention bs{blockSize} d{d}", ops, (acc, v) =>
            {
                acc.KvCacheWrite(v["cache"], v["qkv"], v["slots"], n, hq, layer, shape);
                acc.PagedAttention(v["out"], v["qkv"], v["cache"], v["tables"], v["rowSeq"], v["rowPos"], n, maxBlocks, hq, layer, shape,
                    1f / MathF.Sqrt(d));
            }, ("cache", 0), ("out", 1e-5));
        }
    }

    /// <summary>Train steps (forward, backward, AdamW) and generation of a tiny GPT-2 and a tiny Qwen2, device against CPU.</summary>
    private static void ModelChecks(Checker c)
    {
        foreach (var (family, config) in new[]
                 {
                     ("gpt2", ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40)),
                     ("qwen2", ModelConfig.LlamaFamily(ModelFamily.Qwen2, vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 40,
                         maxPositions: 40, tied: false) with { EosTokenIds = [0] }),
                 })
        {
            using (var cpu = new SyntheticBenchmark(c.Cpu, config, batch: 3, seq: 19, seed: 5))
            using (var dev = new SyntheticBenchmark(c.Device, config, batch: 3, seq: 19, seed: 5))
            {
                for (int step = 1; step <= 3; step++)
                {
                    float lossCpu = cpu.Step(), lossDev = dev.Step();
                    string op = $"TrainStep {family} step {step}";
                    c.Compare(op, "loss", [lossCpu], [lossDev], 1e-5);
                    c.Compare(op, "grads", c.Cpu.ToArray(cpu.Model.Grads!.All), c.Device.ToArray(dev.Model.Grads!.All), 1e-4);
                    c.Compare(op, "params", c.Cpu.ToArray(cpu.Model.Params.All), c.Device.ToArray(dev.Model.Params.All), 1e-5);
                }
            }

            using var cpuModel = new Transformer(c.Cpu, config);
            using var devModel = new Transformer(c.Device, config);
            ModelInit.Initialize(cpuModel, 9, std: 0.5f);
            ModelInit.Initialize(devModel, 9, std: 0.5f);
            foreach (var (name, sampling) in new[]
                     {
                         ("greedy", new SamplingOptions { MaxNewTokens = 10, Temperature = 0f }),
                         ("top-p 0.9", new SamplingOptions { MaxNewTokens = 10, Seed = 3, Temperature = 0.8f, TopP = 0.9f }),
                     })
            {
                var cpuRun = Generate(cpuModel, sampling);
                var devRun = Generate(devModel, sampling);
                string op = $"Generate {family} {name}";
                int differing = cpuRun.Tokens.Length != devRun.Tokens.Length ? int.MaxValue : cpuRun.Tokens.Zip(devRun.Tokens).Count(p => p.First != p.Second);
                c.Report(new Row(op, "tokens differing", differing, 0));
                if (differing == 0)
                {
                    c.Compare(op, "policyLogp", cpuRun.PolicyLogp, devRun.PolicyLogp, 5e-5);
                }
            }
        }
    }

    private static (int[] Tokens, float[] PolicyLogp) Generate(Transformer model, SamplingOptions sampling)
    {
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = 4, BlockSize = 8 });
        int[][] prompts = [[5, 9, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [40]];
        var samples = gen.Generate(prompts, 2, sampling).SelectMany(g => g.Samples).ToList();
        return ([.. samples.SelectMany(s => s.TokenIds.Append(-1))], [.. samples.SelectMany(s => s.PolicyLogProbs)]);
    }

    /// <summary>Normalised max error: max |actual - expected| / max |expected| (infinite where NaN appears on one side only).</summary>
    public static double RelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        if (expected.Length != actual.Length)
        {
            return double.PositiveInfinity;
        }

        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(actual[i]) != float.IsNaN(expected[i]))
            {
                return double.PositiveInfinity;
            }

            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }

        return maxDiff / Math.Max(maxRef, 1e-30);
    }

    private static float[] Uniform(ulong seed, long n, float range = 1f)
    {
        var rng = new SplitMix64(seed * 0x9E3779B97F4A7C15UL);
        var data = new float[n];
        for (long i = 0; i < n; i++)
        {
            data[i] = (float)(((2 * rng.NextDouble()) - 1) * range);
        }

        return data;
    }

    private static int[] Ints(ulong seed, int n, int bound)
    {
        var rng = new SplitMix64(seed);
        return [.. Enumerable.Range(0, n).Select(_ => rng.NextInt(bound))];
    }

    /// <summary>RoPE tables (theta 10000): <paramref name="positions"/> rows of <paramref name="half"/> angles, cos and sin.</summary>
    internal static (float[] Cos, float[] Sin) RopeTables(int positions, int half)
    {
        var cos = new float[positions * half];
        var sin = new float[positions * half];
        for (int p = 0; p < positions; p++)
        {
            for (int j = 0; j < half; j++)
            {
                double angle = p * Math.Pow(10000, -2.0 * j / (2 * half));
                cos[(p * half) + j] = (float)Math.Cos(angle);
                sin[(p * half) + j] = (float)Math.Sin(angle);
            }
        }

        return (cos, sin);
    }

    /// <summary>Runs ops on both accelerators and reports the compared outputs.</summary>
    private sealed class Checker(Accelerator cpu, Accelerator device, double boundScale, Action<Row> report)
    {
        public Accelerator Cpu => cpu;

        public Accelerator Device => device;

        public void Report(Row row) => report(row);

        public void Compare(string op, string output, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double bound) =>
            report(new Row(op, output, RelativeError(expected, actual), bound * boundScale));

        public void Check(string op, Operands operands, Action<Accelerator, OperandViews> run, params (string Output, double Bound)[] bounds)
        {
            OperandResults expected = operands.RunGuarded(cpu, run);
            OperandResults actual = operands.RunGuarded(device, run);
            if (actual.Overwritten.Concat(expected.Overwritten).Select(o => o.Operand).FirstOrDefault() is { } overwritten)
            {
                report(new Row(op, $"{overwritten} written outside its view", double.PositiveInfinity, 0));
                return;
            }

            foreach (var (output, bound) in bounds)
            {
                Compare(op, output, expected[output], actual[output], bound);
            }
        }
    }
}
