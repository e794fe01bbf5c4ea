using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// Token sampling (SampleTokens) and row gather on the CPU: against a double-precision reference of
/// the truncated distribution (temperature, top-k, top-p, inverse CDF), empirical distributions,
/// ties (greedy, top-k, top-p), bit-identity of the policy log-prob with the LM head's
/// TokenLogProbForward, and thread-count determinism.
/// </summary>
public sealed class SamplingTests : IDisposable
{
    private readonly CpuAccelerator cpu = TestDevices.Cpu();

    public void Dispose() => cpu.Dispose();

    /// <summary>Per-row inputs of one SampleTokens call.</summary>
    private sealed class Batch(int s, int v)
    {
        public int S { get; } = s;

        public int V { get; } = v;

        public float[] Logits { get; } = new float[(long)s * v];

        public float[] Uniforms { get; } = new float[s];

        public float[] Temperatures { get; } = new float[s];

        public int[] TopK { get; } = new int[s];

        public float[] TopP { get; } = new float[s];

        public float[] Row(int i) => Logits.AsSpan(i * V, V).ToArray();

        public void Set(int i, float[] z, float u, float t, int k, float p)
        {
            z.CopyTo(Logits, (long)i * V);
            Uniforms[i] = u;
            Temperatures[i] = t;
            TopK[i] = k;
            TopP[i] = p;
        }
    }

    private static (int[] Tokens, float[] SampleLogp, float[] PolicyLogp) Sample(CpuAccelerator acc, Batch b)
    {
        using var logits = acc.Put(b.Logits);
        using var u = acc.Put(b.Uniforms);
        using var t = acc.Put(b.Temperatures);
        using var k = acc.Put(b.TopK);
        using var p = acc.Put(b.TopP);
        using var tokens = acc.Allocate(b.S, Engine.Core.DType.I32);
        using var slp = acc.Allocate(b.S);
        using var plp = acc.Allocate(b.S);
        acc.SampleTokens(tokens.All, slp.All, plp.All, logits.All, u.All, t.All, k.All, p.All, b.S, b.V);
        return (acc.ToIntArray(tokens.All), acc.Get(slp), acc.Get(plp));
    }

    // ---- reference (double) -------------------------------------------------------------------

    /// <summary>The distribution a row samples from, in double: q over V (0 off the kept set).</summary>
    private sealed class Reference
    {
        public required double[] LogSoftmax { get; init; }

        public required double[] Q { get; init; }

        public required int Greedy { get; init; }

        /// <summary>True when the top-p cut lies within rounding of a boundary, so the kernel may keep one group more or less.</summary>
        public bool Ambiguous { get; init; }

        public static Reference Of(float[] z, double t, int k, double p)
        {
            int v = z.Length;
            double max = z.Max();
            double sumAll = z.Sum(x => Math.Exp(x - max));
            double[] logSoftmax = z.Select(x => x - max - Math.Log(sumAll)).ToArray();
            int greedy = Array.IndexOf(z, (float)max);
            var q = new double[v];
            bool ambiguous = false;
            if (t > 0)
            {
                double keepFrom = double.NegativeInfinity;
                if (k > 0 && k < v)
                {
                    keepFrom = z.OrderByDescending(x => x).ElementAt(k - 1);
                }

                for (int j = 0; j < v; j++)
                {
                    q[j] = z[j] >= keepFrom ? Math.Exp((z[j] - max) / t) : 0;
                }

                if (p < 1)
                {
                    double total = q.Sum();
                    double[] sorted = q.Where(x => x > 0).OrderByDescending(x => x).ToArray();
                    double cum = 0, tau = sorted[^1];
                    for (int i = 0; i < sorted.Length; i++)
                    {
                        cum += sorted[i];
                        if (cum >= p * total)
                        {
                            tau = sorted[i];
                            double before = cum - sorted[i];
                            ambiguous = Math.Abs(cum - (p * total)) < 1e-6 * total || Math.Abs(before - (p * total)) < 1e-6 * total;
                            break;
                        }
                    }

                    for (int j = 0; j < v; j++)
                    {
                        q[j] = q[j] >= tau ? q[j] : 0;
                    }
                }

                double sum = q.Sum();
                for (int j = 0; j < v; j++)
                {
                    q[j] /= sum;
                }
            }
            else
            {
                q[greedy] = 1;
            }

            return new Reference { LogSoftmax = logSoftmax, Q = q, Greedy = greedy, Ambiguous = ambiguous };
        }

        /// <summary>Asserts a drawn token fits the reference inverse CDF at u (within rounding) and its log-probs.</summary>
        public void Check(int token, float sampleLogp, float policyLogp, double u, double temperature, string what)
        {
            Assert.InRange(token, 0, Q.Length - 1);
            double policy = LogSoftmax[token];
            Assert.True(Math.Abs(policyLogp - policy) <= 1e-5 * Math.Max(1, Math.Abs(policy)), $"{what}: policy logp {policyLogp} vs {policy}");
            if (!(temperature > 0))
            {
                Assert.True(token == Greedy, $"{what}: greedy token {token}, expected {Greedy}");
                Assert.Equal(0f, sampleLogp);
                return;
            }

            if (Ambiguous)
            {
                return;
            }

            Assert.True(Q[token] > 0, $"{what}: token {token} is outside the kept set");
            double below = 0;
            for (int j = 0; j < token; j++)
            {
                below += Q[j];
            }

            Assert.True(below - 1e-6 <= u && u < below + Q[token] + 1e-6, $"{what}: token {token} covers [{below}, {below + Q[token]}), u = {u}");
            double lq = Math.Log(Q[token]);
            Assert.True(Math.Abs(sampleLogp - lq) <= 1e-5 * Math.Max(1, Math.Abs(lq)), $"{what}: sample logp {sampleLogp} vs {lq}");
        }
    }

    // ---- sampling -------------------------------------------------------------------------------

    [Theory]
    [InlineData(37)]
    [InlineData(100)]
    [InlineData(1000)]
    [InlineData(5003)]
    public void MatchesDoubleReference(int v)
    {
        float[] temperatures = [0.5f, 1f, 2f];
        int[] ks = [0, 1, 5, v];
        float[] ps = [0.1f, 0.9f, 1f];
        const int repeats = 3;
        int rows = (temperatures.Length * ks.Length * ps.Length * repeats) + 4;
        var b = new Batch(rows, v);
        var rng = new Random(v);
        int i = 0;
        foreach (float t in temperatures)
        {
            foreach (int k in ks)
            {
                foreach (float p in ps)
                {
                    for (int r = 0; r < repeats; r++)
                    {
                        b.Set(i++, Logits(rng, v, scale: r == 0 ? 1f : 4f), (float)rng.NextDouble(), t, k, p);
                    }
                }
            }
        }

        // Greedy rows (temperature 0 and below), whatever top-k and top-p say.
        b.Set(i++, Logits(rng, v, 3f), 0.5f, 0f, 0, 1f);
        b.Set(i++, Logits(rng, v, 3f), 0.9f, -1f, 3, 0.5f);

        // Uniforms at the ends of [0, 1).
        b.Set(i++, Logits(rng, v, 2f), 0f, 1f, 0, 1f);
        b.Set(i++, Logits(rng, v, 2f), 0.99999994f, 1.3f, 7, 0.95f);

        (int[] tokens, float[] slp, float[] plp) = Sample(cpu, b);
        int ambiguous = 0;
        for (int row = 0; row < rows; row++)
        {
            Reference r = Reference.Of(b.Row(row), b.Temperatures[row], b.TopK[row], b.TopP[row]);
            ambiguous += r.Ambiguous ? 1 : 0;
            r.Check(tokens[row], slp[row], plp[row], b.Uniforms[row], b.Temperatures[row],
                $"row {row} (t {b.Temperatures[row]}, k {b.TopK[row]}, p {b.TopP[row]})");
        }

        Assert.True(ambiguous <= 1, $"{ambiguous} rows had a top-p cut within rounding of a boundary and were checked less");
    }

    [Fact]
    public void LargeVocabulary_MatchesDoubleReference()
    {
        const int v = 50_021;
        var b = new Batch(6, v);
        var rng = new Random(5);
        b.Set(0, Logits(rng, v, 6f), 0.3f, 1f, 50, 1f);
        b.Set(1, Logits(rng, v, 6f), 0.7f, 0.8f, 0, 0.9f);
        b.Set(2, Logits(rng, v, 6f), 0.1f, 1.2f, 1000, 0.5f);
        b.Set(3, Logits(rng, v, 1f), 0.6f, 1f, 0, 0.95f);   // flat: top-p keeps most of the vocabulary
        b.Set(4, Logits(rng, v, 6f), 0.2f, 0f, 0, 1f);
        b.Set(5, Logits(rng, v, 6f), 0.9f, 2f, 40_000, 0.99f);
        (int[] tokens, float[] slp, float[] plp) = Sample(cpu, b);
        for (int row = 0; row < b.S; row++)
        {
            Reference.Of(b.Row(row), b.Temperatures[row], b.TopK[row], b.TopP[row])
                .Check(tokens[row], slp[row], plp[row], b.Uniforms[row], b.Temperatures[row], $"row {row}");
        }
    }

    /// <summary>
    /// One row drawn many times: with evenly spaced uniforms the counts equal N q within one draw
    /// (the inverse CDF exactly); with random uniforms a chi-square statistic over the kept tokens
    /// stays small and no token outside the kept set appears.
    /// </summary>
    [Theory]
    [InlineData(0.8f, 12, 0.9f)]
    [InlineData(1.5f, 0, 0.7f)]
    [InlineData(0.6f, 30, 1f)]
    public void EmpiricalDistribution_MatchesTruncatedDistribution(float t, int k, float p)
    {
        const int v = 45, n = 20_000;
        float[] z = Logits(new Random(77), v, 2.5f);
        Reference r = Reference.Of(z, t, k, p);
        Assert.False(r.Ambiguous);
        int kept = r.Q.Count(q => q > 0);
        Assert.True(kept > 2, "the case should keep several tokens");

        foreach (bool stratified in new[] { true, false })
        {
            var b = new Batch(n, v);
            var rng = new Random(78);
            for (int i = 0; i < n; i++)
            {
                b.Set(i, z, stratified ? (float)((i + 0.5) / n) : (float)rng.NextDouble(), t, k, p);
            }

            int[] counts = new int[v];
            foreach (int token in Sample(cpu, b).Tokens)
            {
                counts[token]++;
            }

            double chi2 = 0;
            for (int j = 0; j < v; j++)
            {
                double expected = n * r.Q[j];
                if (r.Q[j] == 0)
                {
                    Assert.True(counts[j] == 0, $"token {j} is outside the kept set but drawn {counts[j]} times");
                    continue;
                }

                if (stratified)
                {
                    Assert.True(Math.Abs(counts[j] - expected) <= 1.01, $"token {j}: {counts[j]} draws, expected {expected:F2}");
                }

                chi2 += (counts[j] - expected) * (counts[j] - expected) / expected;
            }

            int df = kept - 1;
            double bound = stratified ? 1 : df + (6 * Math.Sqrt(2.0 * df));
            Assert.True(chi2 <= bound, $"chi-square {chi2:F2} over {df} degrees of freedom exceeds {bound:F1} (stratified: {stratified})");
        }
    }

    [Fact]
    public void Greedy_TakesTheLowestIdOnTies()
    {
        const int v = 37;
        var b = new Batch(4, v);
        var rng = new Random(3);
        float[] a = Logits(rng, v, 1f), c = Logits(rng, v, 1f), d = Logits(rng, v, 1f);
        a[17] = 5f;
        a[3] = 5f;
        a[30] = 5f;
        c[36] = 4f;
        c[33] = 4f;        // ties only in the tail past the last whole vector
        d[0] = 2f;
        d[35] = 2f;
        b.Set(0, a, 0.99f, 0f, 0, 1f);
        b.Set(1, c, 0.5f, 0f, 0, 1f);
        b.Set(2, d, 0.1f, -2f, 5, 0.3f);
        b.Set(3, a, 0.3f, float.NaN, 0, 1f);
        (int[] tokens, float[] slp, float[] plp) = Sample(cpu, b);
        Assert.Equal([3, 33, 0, 3], tokens);
        Assert.Equal(new float[4], slp);
        for (int i = 0; i < 4; i++)
        {
            Reference.Of(b.Row(i), 0, 0, 1).Check(tokens[i], slp[i], plp[i], 0, 0, $"row {i}");
        }
    }

    [Fact]
    public void TopK_KeepsEveryTieAtTheKthValue()
    {
        const int v = 40, n = 1000;
        float[] z = Logits(new Random(9), v, 1f);   // in [-1, 1)
        z[25] = 3f;
        z[2] = 2f;
        z[11] = 2f;
        z[39] = 2f;
        var b = new Batch(n, v);
        for (int i = 0; i < n; i++)
        {
            b.Set(i, z, (float)((i + 0.5) / n), 1f, 2, 1f);
        }

        int[] tokens = Sample(cpu, b).Tokens;
        Assert.Equal(new[] { 2, 11, 25, 39 }, tokens.Distinct().Order().ToArray());

        // k = 4 takes the same set; k = 5 one more token.
        for (int i = 0; i < n; i++)
        {
            b.TopK[i] = i % 2 == 0 ? 4 : 5;
        }

        tokens = Sample(cpu, b).Tokens;
        Assert.Equal(new[] { 2, 11, 25, 39 }, tokens.Where((_, i) => i % 2 == 0).Distinct().Order().ToArray());
        Assert.Equal(5, tokens.Where((_, i) => i % 2 == 1).Distinct().Count());
    }

    [Fact]
    public void TopP_KeepsEveryTieAtTheBoundary()
    {
        const int v = 21, n = 400;
        float[] z = new float[v];
        Array.Fill(z, -1e4f);                       // probability exactly 0
        float[] probs = [0.4f, 0.2f, 0.2f, 0.2f];
        int[] ids = [7, 1, 12, 20];                 // the tie spans the vector tail
        for (int i = 0; i < ids.Length; i++)
        {
            z[ids[i]] = MathF.Log(probs[i]);
        }

        float[] top = new float[v];
        Array.Fill(top, -1e4f);
        top[4] = MathF.Log(0.3f);
        top[9] = MathF.Log(0.3f);
        top[17] = MathF.Log(0.2f);
        top[18] = MathF.Log(0.2f);

        var b = new Batch(3 * n, v);
        for (int i = 0; i < n; i++)
        {
            float u = (float)((i + 0.5) / n);
            b.Set(i, z, u, 1f, 0, 0.5f);            // 0.4 < 0.5: the boundary falls in the 0.2 tie, all three stay
            b.Set(n + i, z, u, 1f, 0, 0.3f);        // 0.4 alone reaches 0.3
            b.Set((2 * n) + i, top, u, 1f, 0, 0.1f); // the tie at the top: both 0.3 tokens stay
        }

        (int[] tokens, float[] slp, _) = Sample(cpu, b);
        Assert.Equal(new[] { 1, 7, 12, 20 }, tokens.Take(n).Distinct().Order().ToArray());
        Assert.Equal(new[] { 7 }, tokens.Skip(n).Take(n).Distinct().ToArray());
        Assert.All(slp.Skip(n).Take(n), x => Assert.Equal(0f, x));
        Assert.Equal(new[] { 4, 9 }, tokens.Skip(2 * n).Distinct().Order().ToArray());
        Assert.All(slp.Skip(2 * n), x => Assert.True(Math.Abs(x - Math.Log(0.5)) < 1e-6, $"{x}"));
    }

    [Fact]
    public void TopKOne_IsTheGreedyToken()
    {
        const int v = 301;
        var b = new Batch(30, v);
        var rng = new Random(21);
        for (int i = 0; i < b.S; i++)
        {
            b.Set(i, Logits(rng, v, 3f), (float)rng.NextDouble(), i % 3 == 0 ? 0.7f : i % 3 == 1 ? 1f : 3f, 1, i % 2 == 0 ? 1f : 0.5f);
        }

        (int[] tokens, float[] slp, float[] plp) = Sample(cpu, b);
        for (int i = 0; i < b.S; i++)
        {
            Assert.Equal(Reference.Of(b.Row(i), 0, 0, 1).Greedy, tokens[i]);
            Assert.Equal(0f, slp[i]);
        }

        for (int i = 0; i < b.S; i++)
        {
            b.Temperatures[i] = 0;
        }

        (int[] greedy, _, float[] greedyPlp) = Sample(cpu, b);
        Assert.Equal(greedy, tokens);
        Assert.Equal(greedyPlp, plp);
    }

    /// <summary>
    /// The policy log-prob is bit-identical to TokenLogProbForward's logp for the same x and W
    /// (logits by the accelerator's Gemm), whatever rows the LM head blocks together.
    /// </summary>
    [Theory]
    [InlineData(5, 9, 5, 0)]       // V below one vector
    [InlineData(13, 16, 37, 3)]
    [InlineData(7, 24, 1100, 1)]   // several sum chunks and a tail
    public void PolicyLogp_IsBitIdenticalToTokenLogProbForward(int s, int c, int v, int rowsPerBlock)
    {
        float[] x = TestData.Uniform(31 + v, (long)s * c, 2f);
        float[] w = TestData.Uniform(32 + v, (long)v * c);
        using CpuAccelerator acc = TestDevices.Cpu(2);
        if (rowsPerBlock > 0)
        {
            acc.HeadBlockBytes = 4L * v * rowsPerBlock;
        }

        using var xb = acc.Put(x);
        using var wb = acc.Put(w);
        using var logits = acc.Allocate((long)s * v);
        acc.Gemm(logits.All, xb.All, wb.All, s, v, c, false, true);
        var b = new Batch(s, v);
        acc.Download(logits.All, b.Logits);
        var rng = new Random(33);
        for (int i = 0; i < s; i++)
        {
            b.Uniforms[i] = (float)rng.NextDouble();
            b.Temperatures[i] = i % 4 == 0 ? 0f : 0.5f + i % 3;
            b.TopK[i] = i % 3 == 0 ? 0 : 1 + (i % 5);
            b.TopP[i] = i % 2 == 0 ? 1f : 0.8f;
        }

        (int[] tokens, _, float[] plp) = Sample(acc, b);
        using var targets = acc.Put(tokens);
        using var logp = acc.Allocate(s);
        acc.TokenLogProbForward(logp.All, default, xb.All, wb.All, targets.All, s, c, v);
        float[] expected = acc.Get(logp);
        for (int i = 0; i < s; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(plp[i]),
                $"row {i}: policy logp {plp[i]:R} vs TokenLogProbForward {expected[i]:R}");
        }
    }

    [Fact]
    public void OneAndTwoThreads_AreBitIdentical()
    {
        const int v = 2049;
        var b = new Batch(24, v);
        var rng = new Random(41);
        for (int i = 0; i < b.S; i++)
        {
            b.Set(i, Logits(rng, v, 4f), (float)rng.NextDouble(), (i % 4) * 0.5f, i % 3 == 0 ? 0 : 20 * i, i % 2 == 0 ? 1f : 0.85f);
        }

        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        (int[] t1, float[] s1, float[] p1) = Sample(one, b);
        (int[] t2, float[] s2, float[] p2) = Sample(two, b);
        Assert.Equal(t1, t2);
        Assert.Equal(s1.Select(BitConverter.SingleToInt32Bits), s2.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(p1.Select(BitConverter.SingleToInt32Bits), p2.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void SameRow_GivesTheSameResultWhateverTheOtherRows()
    {
        const int v = 513;
        var rng = new Random(51);
        float[] z = Logits(rng, v, 3f);
        var alone = new Batch(1, v);
        alone.Set(0, z, 0.37f, 0.9f, 40, 0.8f);
        var mixed = new Batch(9, v);
        for (int i = 0; i < mixed.S; i++)
        {
            mixed.Set(i, Logits(rng, v, 3f), (float)rng.NextDouble(), 1.1f, 7, 0.6f);
        }

        mixed.Set(5, z, 0.37f, 0.9f, 40, 0.8f);
        (int[] ta, float[] sa, float[] pa) = Sample(cpu, alone);
        (int[] tm, float[] sm, float[] pm) = Sample(cpu, mixed);
        Assert.Equal(ta[0], tm[5]);
        Assert.Equal(BitConverter.SingleToInt32Bits(sa[0]), BitConverter.SingleToInt32Bits(sm[5]));
        Assert.Equal(BitConverter.SingleToInt32Bits(pa[0]), BitConverter.SingleToInt32Bits(pm[5]));
    }

    // ---- gather ---------------------------------------------------------------------------------

    [Theory]
    [InlineData(5, 37, 9)]
    [InlineData(1, 1, 1)]
    [InlineData(300, 250, 40)]   // over the parallel threshold
    public void GatherRows_CopiesTheIndexedRows(int n, int width, int srcRows)
    {
        float[] src = TestData.Uniform(61 + n, (long)srcRows * width);
        int[] rows = TestData.Ints(62 + n, n, srcRows);
        rows[0] = srcRows - 1;
        using var s = cpu.Put(src);
        using var r = cpu.Put(rows);
        using var d = cpu.Allocate((long)n * width);
        cpu.Fill(d.All, float.NaN);
        cpu.GatherRows(d.All, s.All, r.All, n, width);
        float[] got = cpu.Get(d);
        for (int i = 0; i < n; i++)
        {
            Assert.True(got.AsSpan(i * width, width).SequenceEqual(src.AsSpan(rows[i] * width, width)), $"row {i}");
        }
    }

    [Fact]
    public void GatherRows_RejectsRowsOutsideTheSource()
    {
        using var s = cpu.Put(TestData.Uniform(71, 4 * 8));
        using var d = cpu.Allocate(2 * 8);
        using var bad = cpu.Put(new[] { 1, 4 });
        using var negative = cpu.Put(new[] { -1, 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.GatherRows(d.All, s.All, bad.All, 2, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.GatherRows(d.All, s.All, negative.All, 2, 8));
    }

    private static float[] Logits(Random rng, int v, float scale)
    {
        var z = new float[v];
        for (int j = 0; j < v; j++)
        {
            z[j] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }

        return z;
    }
}
