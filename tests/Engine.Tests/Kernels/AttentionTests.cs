using System.Runtime.Intrinsics;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// Causal grouped-query attention (forward and backward) on the CPU backend against a plain
/// double-precision reference that materialises the softmax, plus finite differences, causality
/// and thread-count determinism.
/// </summary>
public sealed class AttentionTests : IDisposable
{
    private readonly CpuAccelerator cpu = TestDevices.Cpu();

    public void Dispose() => cpu.Dispose();

    /// <summary>
    /// Shapes: T = 1, T off the 64-row tile, MHA, GQA 4:2 and 6:1, D = 8/16/33/64, B = 1..3, and one
    /// sequence past <see cref="CpuAttention.MaxFusedTiles"/> tiles (the backward's recomputing dQ pass).
    /// </summary>
    public static TheoryData<int, int, int, int, int> Shapes => new()
    {
        { 1, 1, 1, 1, 8 },
        { 2, 1, 4, 2, 16 },
        { 2, 7, 2, 2, 16 },
        { 1, 64, 4, 4, 8 },
        { 1, 70, 4, 2, 33 },
        { 3, 130, 6, 1, 16 },
        { 2, 129, 2, 1, 33 },
        { 1, 200, 4, 2, 64 },
        { 1, 530, 2, 1, 8 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_MatchesDoubleReference(int b, int t, int hq, int hkv, int d)
    {
        var s = new Shape(b, t, hq, hkv, d);
        float[] qkv = TestData.Uniform(11 + t + d, s.QkvLength, 1.5f);
        (float[] output, float[] lse) = Forward(cpu, qkv, s);
        Reference r = Reference.Compute(qkv, s, g: null);
        Compare.Close(r.Output, output, 2e-5, "output");
        Compare.Close(r.Lse, lse, 2e-6, "lse");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Backward_MatchesDoubleReference(int b, int t, int hq, int hkv, int d)
    {
        var s = new Shape(b, t, hq, hkv, d);
        float[] qkv = TestData.Uniform(21 + t + d, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(31 + t, s.OutLength);
        (float[] output, float[] lse) = Forward(cpu, qkv, s);
        float[] dqkv = Backward(cpu, qkv, output, lse, g, s);
        Reference r = Reference.Compute(qkv, s, g);
        for (int part = 0; part < 3; part++)
        {
            // Each part on its own scale, floored at 1% of the whole gradient's (dq is exactly 0 when T = 1).
            double[] expected = s.Part(r.Dqkv!, part);
            float[] actual = s.Part(dqkv, part);
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            }

            double err = maxDiff / Math.Max(maxRef, 1e-2 * MaxAbs(r.Dqkv!));
            Assert.True(err <= 1e-4, $"{"qkv"[part]} gradient: relative error {err:E3} exceeds 1e-4");
        }
    }

    private static double MaxAbs(double[] x)
    {
        double m = 0;
        foreach (double v in x)
        {
            m = Math.Max(m, Math.Abs(v));
        }

        return m;
    }

    [Theory]
    [InlineData(2, 9, 4, 2, 8)]
    [InlineData(1, 70, 6, 1, 33)]
    [InlineData(1, 5, 2, 2, 3)]
    public void Backward_MatchesFiniteDifferences(int b, int t, int hq, int hkv, int d)
    {
        var s = new Shape(b, t, hq, hkv, d);
        float[] qkv = TestData.Uniform(41 + t, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(51 + t, s.OutLength);
        (float[] output, float[] lse) = Forward(cpu, qkv, s);
        float[] dqkv = Backward(cpu, qkv, output, lse, g, s);
        FiniteDifference.Check(qkv, dqkv, x =>
        {
            float[] y = Forward(cpu, x, s).Output;
            double loss = 0;
            for (int i = 0; i < y.Length; i++)
            {
                loss += (double)g[i] * y[i];
            }

            return loss;
        }, "attention dqkv", samples: 48);
    }

    [Fact]
    public void Backward_WritesEveryElement()
    {
        var s = new Shape(2, 67, 4, 2, 24);
        float[] qkv = TestData.Uniform(61, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(62, s.OutLength);
        (float[] output, float[] lse) = Forward(cpu, qkv, s);
        float[] clean = Backward(cpu, qkv, output, lse, g, s);
        float[] dirty = Backward(cpu, qkv, output, lse, g, s, prefill: float.NaN);
        Assert.Equal(clean, dirty);
        Assert.DoesNotContain(dirty, float.IsNaN);
    }

    [Fact]
    public void Forward_IsCausal()
    {
        var s = new Shape(2, 100, 4, 2, 16);
        float[] qkv = TestData.Uniform(71, s.QkvLength, 1.5f);
        (float[] before, float[] lseBefore) = Forward(cpu, qkv, s);
        const int changed = 77;
        for (int bi = 0; bi < s.B; bi++)
        {
            for (int c = s.Hq * s.D; c < s.Stride; c++)
            {
                qkv[((bi * s.T) + changed) * s.Stride + c] += 0.75f;
            }
        }

        (float[] after, float[] lseAfter) = Forward(cpu, qkv, s);
        for (int bi = 0; bi < s.B; bi++)
        {
            for (int tt = 0; tt < s.T; tt++)
            {
                var rowBefore = before.AsSpan(((bi * s.T) + tt) * s.Hq * s.D, s.Hq * s.D);
                var rowAfter = after.AsSpan(((bi * s.T) + tt) * s.Hq * s.D, s.Hq * s.D);
                if (tt < changed)
                {
                    Assert.True(rowBefore.SequenceEqual(rowAfter), $"output at t={tt} changed when token {changed} changed");
                }
                else
                {
                    Assert.False(rowBefore.SequenceEqual(rowAfter), $"output at t={tt} ignores token {changed}");
                }

                for (int h = 0; h < s.Hq; h++)
                {
                    int i = ((bi * s.Hq) + h) * s.T + tt;
                    Assert.True(tt >= changed || lseBefore[i] == lseAfter[i], $"lse at t={tt} changed");
                }
            }
        }
    }

    [Theory]
    [InlineData(2, 150, 4, 2, 40)]
    [InlineData(1, 531, 4, 2, 16)]
    public void OneAndTwoThreads_AreBitIdentical(int b, int t, int hq, int hkv, int d)
    {
        var s = new Shape(b, t, hq, hkv, d);
        float[] qkv = TestData.Uniform(81, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(82, s.OutLength);
        using CpuAccelerator one = TestDevices.Cpu(1);
        using CpuAccelerator two = TestDevices.Cpu(2);
        (float[] out1, float[] lse1) = Forward(one, qkv, s);
        (float[] out2, float[] lse2) = Forward(two, qkv, s);
        Assert.Equal(out1, out2);
        Assert.Equal(lse1, lse2);
        float[] d1 = Backward(one, qkv, out1, lse1, g, s);
        float[] d2 = Backward(two, qkv, out2, lse2, g, s);
        Assert.Equal(d1, d2);
    }

    /// <summary>The kernels for every vector width (AVX-512, AVX2 and scalar) match the reference, whatever this machine prefers.</summary>
    [Theory]
    [InlineData(512, 75)]
    [InlineData(256, 75)]
    [InlineData(1, 75)]
    [InlineData(512, 530)]
    [InlineData(256, 530)]
    [InlineData(1, 530)]
    public void EveryVectorWidth_MatchesDoubleReference(int width, int t)
    {
        if (width == 512 && !Vector512.IsHardwareAccelerated)
        {
            width = 256; // run the widest path the hardware has instead
        }

        var s = t > 100 ? new Shape(1, t, 2, 1, 12) : new Shape(2, t, 4, 2, 20);
        float[] qkv = TestData.Uniform(91, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(92, s.OutLength);
        Reference r = Reference.Compute(qkv, s, g);
        float[] output = new float[s.OutLength], lse = new float[s.LseLength], dqkv = new float[s.QkvLength];
        using var pool = new CpuThreadPool(2);
        var scratch = new AttentionScratch(pool.ThreadCount);
        scratch.Ensure(CpuAttention.ScratchFloats(s.D));
        RunWidth(width, pool, scratch, qkv, g, output, lse, dqkv, s);
        Compare.Close(r.Output, output, 2e-5, $"output ({width})");
        Compare.Close(r.Lse, lse, 2e-6, $"lse ({width})");
        Compare.Close(r.Dqkv!, dqkv, 1e-4, $"dqkv ({width})");
    }

    /// <summary>Every vector width (AVX-512, AVX2, scalar) gives the same bits: one FMA chain per element, the same exp, one lane order for the row dots.</summary>
    [Theory]
    [InlineData(2, 75, 4, 2, 20)]
    [InlineData(1, 530, 2, 1, 40)]
    public void EveryVectorWidth_GivesTheSameBits(int b, int t, int hq, int hkv, int d)
    {
        var s = new Shape(b, t, hq, hkv, d);
        float[] qkv = TestData.Uniform(93, s.QkvLength, 1.5f);
        float[] g = TestData.Uniform(94, s.OutLength);
        using var pool = new CpuThreadPool(2);
        var scratch = new AttentionScratch(pool.ThreadCount);
        scratch.Ensure(CpuAttention.ScratchFloats(s.D));
        float[] output = new float[s.OutLength], lse = new float[s.LseLength], dqkv = new float[s.QkvLength];
        RunWidth(1, pool, scratch, qkv, g, output, lse, dqkv, s);
        foreach (int width in Vector512.IsHardwareAccelerated ? new[] { 256, 512 } : [256])
        {
            float[] o = new float[s.OutLength], l = new float[s.LseLength], dq = new float[s.QkvLength];
            RunWidth(width, pool, scratch, qkv, g, o, l, dq, s);
            Assert.True(Bits(output).SequenceEqual(Bits(o)), $"output ({width} vs scalar)");
            Assert.True(Bits(lse).SequenceEqual(Bits(l)), $"lse ({width} vs scalar)");
            Assert.True(Bits(dqkv).SequenceEqual(Bits(dq)), $"dqkv ({width} vs scalar)");
        }
    }

    [Fact]
    public void The_scalar_exp_is_the_vector_exp_bit_for_bit()
    {
        for (float a = -90f; a <= 0.5f; a += 0.000917f)
        {
            int vector = BitConverter.SingleToInt32Bits(AttentionSimd.ExpApprox.Exp(Vector256.Create(a)).ToScalar());
            Assert.True(vector == BitConverter.SingleToInt32Bits(AttentionSimd.ExpApprox.Exp(a)), $"exp({a:R})");
        }

        Assert.Equal(0f, AttentionSimd.ExpApprox.Exp(float.NegativeInfinity));
    }

    private static ReadOnlySpan<int> Bits(float[] x) => System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(x.AsSpan());

    private static unsafe void RunWidth(int width, CpuThreadPool pool, AttentionScratch scratch, float[] qkv, float[] g,
        float[] output, float[] lse, float[] dqkv, Shape s)
    {
        float scale = s.Scale;
        fixed (float* pq = qkv, pg = g, po = output, pl = lse, pd = dqkv)
        {
            switch (width)
            {
                case 512:
                    CpuAttention.Forward<Vector512<float>, AttentionSimd.V512>(pool, scratch, po, pl, pq, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    CpuAttention.Backward<Vector512<float>, AttentionSimd.V512>(pool, scratch, pd, pg, pq, po, pl, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    break;
                case 256:
                    CpuAttention.Forward<Vector256<float>, AttentionSimd.V256>(pool, scratch, po, pl, pq, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    CpuAttention.Backward<Vector256<float>, AttentionSimd.V256>(pool, scratch, pd, pg, pq, po, pl, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    break;
                default:
                    CpuAttention.Forward<float, AttentionSimd.Scalar>(pool, scratch, po, pl, pq, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    CpuAttention.Backward<float, AttentionSimd.Scalar>(pool, scratch, pd, pg, pq, po, pl, s.B, s.T, s.Hq, s.Hkv, s.D, scale);
                    break;
            }
        }
    }

    private static (float[] Output, float[] Lse) Forward(CpuAccelerator acc, float[] qkv, Shape s)
    {
        using var q = acc.Put(qkv);
        using var o = acc.Allocate(s.OutLength);
        using var l = acc.Allocate(s.LseLength);
        acc.AttentionForward(o.All, l.All, q.All, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
        return (acc.Get(o), acc.Get(l));
    }

    private static float[] Backward(CpuAccelerator acc, float[] qkv, float[] output, float[] lse, float[] g, Shape s,
        float prefill = 0)
    {
        using var q = acc.Put(qkv);
        using var o = acc.Put(output);
        using var l = acc.Put(lse);
        using var dout = acc.Put(g);
        using var dq = acc.Allocate(s.QkvLength);
        acc.Fill(dq.All, prefill);
        acc.AttentionBackward(dq.All, dout.All, q.All, o.All, l.All, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
        return acc.Get(dq);
    }

    private readonly record struct Shape(int B, int T, int Hq, int Hkv, int D)
    {
        public int Stride => (Hq + (2 * Hkv)) * D;

        public int QkvLength => B * T * Stride;

        public int OutLength => B * T * Hq * D;

        public int LseLength => B * Hq * T;

        public float Scale => 1f / MathF.Sqrt(D);

        /// <summary>The q (part 0), k (1) or v (2) columns of every row of a qkv-layout array.</summary>
        public float[] Part(float[] qkv, int part) => PartOf(qkv, part);

        public double[] Part(double[] qkv, int part) => PartOf(qkv, part);

        private T2[] PartOf<T2>(T2[] qkv, int part)
        {
            int start = part == 0 ? 0 : part == 1 ? Hq * D : (Hq + Hkv) * D;
            int width = part == 0 ? Hq * D : Hkv * D;
            var result = new T2[B * T * width];
            for (int r = 0; r < B * T; r++)
            {
                Array.Copy(qkv, (r * Stride) + start, result, r * width, width);
            }

            return result;
        }
    }

    /// <summary>Materialised-softmax attention in double: output, lse and (given g = dL/dout) the analytic dqkv.</summary>
    private sealed class Reference
    {
        public required double[] Output { get; init; }

        public required double[] Lse { get; init; }

        public double[]? Dqkv { get; init; }

        public static Reference Compute(float[] qkv, Shape s, float[]? g)
        {
            int stride = s.Stride, d = s.D, t = s.T, rep = s.Hq / s.Hkv;
            double scale = s.Scale;
            var output = new double[s.OutLength];
            var lse = new double[s.LseLength];
            double[]? dqkv = g is null ? null : new double[s.QkvLength];
            var p = new double[t];
            var dp = new double[t];
            for (int bi = 0; bi < s.B; bi++)
            {
                for (int h = 0; h < s.Hq; h++)
                {
                    int kv = h / rep;
                    int qOff = h * d, kOff = (s.Hq + kv) * d, vOff = (s.Hq + s.Hkv + kv) * d;
                    for (int i = 0; i < t; i++)
                    {
                        int qRow = ((bi * t) + i) * stride;
                        double max = double.NegativeInfinity;
                        for (int j = 0; j <= i; j++)
                        {
                            int kRow = ((bi * t) + j) * stride;
                            double dot = 0;
                            for (int c = 0; c < d; c++)
                            {
                                dot += (double)qkv[qRow + qOff + c] * qkv[kRow + kOff + c];
                            }

                            p[j] = dot * scale;
                            max = Math.Max(max, p[j]);
                        }

                        double sum = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            p[j] = Math.Exp(p[j] - max);
                            sum += p[j];
                        }

                        lse[((bi * s.Hq) + h) * t + i] = max + Math.Log(sum);
                        int oRow = ((bi * t) + i) * s.Hq * d + qOff;
                        for (int j = 0; j <= i; j++)
                        {
                            p[j] /= sum;
                            int vRow = ((bi * t) + j) * stride;
                            for (int c = 0; c < d; c++)
                            {
                                output[oRow + c] += p[j] * qkv[vRow + vOff + c];
                            }
                        }

                        if (g is null)
                        {
                            continue;
                        }

                        // dP_ij = g_i . v_j; Di = sum_j P_ij dP_ij; dS = P (dP - Di).
                        double di = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            int vRow = ((bi * t) + j) * stride;
                            double dot = 0;
                            for (int c = 0; c < d; c++)
                            {
                                dot += (double)g[oRow + c] * qkv[vRow + vOff + c];
                            }

                            dp[j] = dot;
                            di += p[j] * dot;
                        }

                        for (int j = 0; j <= i; j++)
                        {
                            int kRow = ((bi * t) + j) * stride;
                            double ds = p[j] * (dp[j] - di);
                            for (int c = 0; c < d; c++)
                            {
                                dqkv![qRow + qOff + c] += scale * ds * qkv[kRow + kOff + c];
                                dqkv[kRow + kOff + c] += scale * ds * qkv[qRow + qOff + c];
                                dqkv[kRow + vOff + c] += p[j] * g[oRow + c];
                            }
                        }
                    }
                }
            }

            return new Reference { Output = output, Lse = lse, Dqkv = dqkv };
        }
    }
}
