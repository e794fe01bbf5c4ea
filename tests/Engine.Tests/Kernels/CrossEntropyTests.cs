using System.Runtime.Intrinsics;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// The LM head fused with log-softmax (TokenLogProbForward / Backward / ForwardBackward) on the CPU:
/// against a double-precision reference, finite differences, block boundaries, skipped rows and
/// thread-count determinism.
/// </summary>
public sealed class CrossEntropyTests
{
    /// <summary>One problem: x [N, C], W [V, C], targets [N] (negative = skipped).</summary>
    private sealed record Case(int N, int C, int V, float[] X, float[] W, int[] Targets);

    private static Case MakeCase(int seed, int n, int c, int v, double skipFraction = 0, float xScale = 1f)
    {
        float[] x = TestData.Uniform(seed, (long)n * c, xScale);
        float[] w = TestData.Uniform(seed + 1, (long)v * c);
        int[] targets = TestData.Ints(seed + 2, n, v);
        var rng = new Random(seed + 3);
        for (int i = 0; i < n; i++)
        {
            if (rng.NextDouble() < skipFraction)
            {
                targets[i] = i % 2 == 0 ? -1 : -100;
            }
        }

        return new Case(n, c, v, x, w, targets);
    }

    // ---- reference (double) -------------------------------------------------------------------

    /// <summary>
    /// Per row: logp of the target, entropy, and (given dlogp / dentropy) dx and dW from
    /// dz_j = dlogp (onehot_j - p_j) - dentropy p_j (log p_j + H).
    /// </summary>
    private static void Reference(Case k, float[] xs, float[] ws, float[]? dlogp, float[]? dentropy,
        out double[] logp, out double[] entropy, out double[] dx, out double[] dw)
    {
        int n = k.N, c = k.C, v = k.V;
        logp = new double[n];
        entropy = new double[n];
        dx = new double[(long)n * c];
        dw = new double[(long)v * c];
        var z = new double[v];
        for (int i = 0; i < n; i++)
        {
            int t = k.Targets[i];
            if (t < 0)
            {
                continue;
            }

            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++)
            {
                double sum = 0;
                for (int q = 0; q < c; q++)
                {
                    sum += (double)xs[(long)i * c + q] * ws[(long)j * c + q];
                }

                z[j] = sum;
                max = Math.Max(max, sum);
            }

            double s = 0;
            for (int j = 0; j < v; j++)
            {
                s += Math.Exp(z[j] - max);
            }

            double lse = max + Math.Log(s);
            double h = 0;
            for (int j = 0; j < v; j++)
            {
                double lp = z[j] - lse;
                h -= Math.Exp(lp) * lp;
            }

            logp[i] = z[t] - lse;
            entropy[i] = h;
            if (dlogp is null)
            {
                continue;
            }

            double g = dlogp[i], e = dentropy is null ? 0 : dentropy[i];
            for (int j = 0; j < v; j++)
            {
                double lp = z[j] - lse, p = Math.Exp(lp);
                double dz = g * ((j == t ? 1 : 0) - p) - e * p * (lp + h);
                for (int q = 0; q < c; q++)
                {
                    dx[(long)i * c + q] += dz * ws[(long)j * c + q];
                    dw[(long)j * c + q] += dz * xs[(long)i * c + q];
                }
            }
        }
    }

    // ---- running the kernels ------------------------------------------------------------------

    private static CpuAccelerator Device(int threads, Case k, int rowsPerBlock)
    {
        CpuAccelerator acc = TestDevices.Cpu(threads);
        if (rowsPerBlock > 0)
        {
            acc.HeadBlockBytes = 4L * k.V * rowsPerBlock;
        }

        return acc;
    }

    private static (float[] LogP, float[] Entropy) Forward(CpuAccelerator acc, Case k, bool withEntropy = true)
    {
        using DeviceBuffer x = acc.Put(k.X), w = acc.Put(k.W), t = acc.Put(k.Targets);
        using DeviceBuffer logp = acc.Put(Garbage(k.N)), entropy = acc.Put(Garbage(k.N));
        acc.TokenLogProbForward(logp.All, withEntropy ? entropy.All : default, x.All, w.All, t.All, k.N, k.C, k.V);
        return (acc.Get(logp), acc.Get(entropy));
    }

    private static (float[] Dx, float[] Dw) Backward(CpuAccelerator acc, Case k, float[] dlogp, float[]? dentropy, float[] dw0)
    {
        using DeviceBuffer x = acc.Put(k.X), w = acc.Put(k.W), t = acc.Put(k.Targets);
        using DeviceBuffer dx = acc.Put(Garbage(k.N * k.C)), dw = acc.Put(dw0);
        using DeviceBuffer gl = acc.Put(dlogp), ge = acc.Put(dentropy ?? new float[1]);
        acc.TokenLogProbBackward(dx.All, dw.All, gl.All, dentropy is null ? default : ge.All, x.All, w.All, t.All, k.N, k.C, k.V);
        return (acc.Get(dx), acc.Get(dw));
    }

    private static (float[] LogP, float[] Dx, float[] Dw) Fused(CpuAccelerator acc, Case k, float[] dlogp, float[] dw0)
    {
        using DeviceBuffer x = acc.Put(k.X), w = acc.Put(k.W), t = acc.Put(k.Targets);
        using DeviceBuffer logp = acc.Put(Garbage(k.N)), dx = acc.Put(Garbage(k.N * k.C)), dw = acc.Put(dw0);
        using DeviceBuffer gl = acc.Put(dlogp);
        acc.TokenLogProbForwardBackward(logp.All, dx.All, dw.All, gl.All, x.All, w.All, t.All, k.N, k.C, k.V);
        return (acc.Get(logp), acc.Get(dx), acc.Get(dw));
    }

    /// <summary>Output buffers start non-zero so a missed write shows.</summary>
    private static float[] Garbage(int n)
    {
        var a = new float[n];
        Array.Fill(a, 7.25f);
        return a;
    }

    private static double[] Plus(float[] a, double[] b)
    {
        var r = new double[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            r[i] = a[i] + b[i];
        }

        return r;
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{what}[{i}]: {expected[i]:R} vs {actual[i]:R}");
        }
    }

    private static void AssertSkippedRowsZero(Case k, float[]? perRow, float[]? dx)
    {
        for (int i = 0; i < k.N; i++)
        {
            if (k.Targets[i] >= 0)
            {
                continue;
            }

            if (perRow is not null)
            {
                Assert.Equal(0f, perRow[i]);
            }

            for (int q = 0; dx is not null && q < k.C; q++)
            {
                Assert.Equal(0f, dx[(long)i * k.C + q]);
            }
        }
    }

    // ---- tests --------------------------------------------------------------------------------

    [Theory]
    [InlineData(1, 16, 37, 0, 0.0)]     // one row, V not a multiple of 16
    [InlineData(5, 24, 97, 0, 0.0)]
    [InlineData(3, 7, 5, 0, 0.0)]       // V below one vector: scalar path
    [InlineData(4, 12, 1100, 0, 0.0)]   // V over two sum chunks plus a tail
    [InlineData(41, 9, 97, 3, 0.3)]     // many blocks of 3 rows, skipped rows gathered around
    [InlineData(17, 10, 37, 1, 0.2)]    // one row per block
    public void Forward_MatchesReference(int n, int c, int v, int rowsPerBlock, double skip)
    {
        Case k = MakeCase(10 + n, n, c, v, skip);
        using CpuAccelerator acc = Device(2, k, rowsPerBlock);
        (float[] logp, float[] entropy) = Forward(acc, k);
        Reference(k, k.X, k.W, null, null, out double[] rl, out double[] re, out _, out _);
        Compare.Close(rl, logp, 2e-6, "logp");
        Compare.Close(re, entropy, 2e-6, "entropy");
        AssertSkippedRowsZero(k, logp, null);
        AssertSkippedRowsZero(k, entropy, null);

        // Without the entropy output the log-probs are the same numbers.
        (float[] logpOnly, float[] untouched) = Forward(acc, k, withEntropy: false);
        AssertBitwise(logp, logpOnly, "logp without entropy");
        Assert.All(untouched, e => Assert.Equal(7.25f, e));
    }

    [Theory]
    [InlineData(1, 16, 37, 0, 0.0)]
    [InlineData(6, 20, 97, 0, 0.0)]
    [InlineData(3, 5, 6, 0, 0.0)]
    [InlineData(4, 8, 700, 0, 0.0)]
    [InlineData(29, 11, 97, 4, 0.35)]
    [InlineData(9, 6, 37, 1, 0.4)]
    public void Backward_MatchesReference(int n, int c, int v, int rowsPerBlock, double skip)
    {
        Case k = MakeCase(30 + n, n, c, v, skip);
        float[] dlogp = TestData.Uniform(40 + n, n);
        float[] dentropy = TestData.Uniform(50 + n, n);
        float[] dw0 = TestData.Uniform(60 + n, (long)v * c);
        using CpuAccelerator acc = Device(2, k, rowsPerBlock);
        (float[] dx, float[] dw) = Backward(acc, k, dlogp, dentropy, dw0);
        Reference(k, k.X, k.W, dlogp, dentropy, out _, out _, out double[] rdx, out double[] rdw);
        Compare.Close(rdx, dx, 5e-6, "dx");
        Compare.Close(Plus(dw0, rdw), dw, 5e-6, "dw (accumulated onto its start)");
        AssertSkippedRowsZero(k, null, dx);

        // Without dentropy: the reference with dentropy = 0.
        (float[] dx2, float[] dw2) = Backward(acc, k, dlogp, null, dw0);
        Reference(k, k.X, k.W, dlogp, null, out _, out _, out double[] rdx2, out double[] rdw2);
        Compare.Close(rdx2, dx2, 5e-6, "dx (no dentropy)");
        Compare.Close(Plus(dw0, rdw2), dw2, 5e-6, "dw (no dentropy)");
        AssertSkippedRowsZero(k, null, dx2);
    }

    [Fact]
    public void Backward_AgreesWithFiniteDifferences()
    {
        Case k = MakeCase(71, 5, 8, 37, skipFraction: 0.25);
        float[] a = TestData.Uniform(72, k.N);
        float[] e = TestData.Uniform(73, k.N);
        using CpuAccelerator acc = Device(2, k, 2);
        (float[] dx, float[] dw) = Backward(acc, k, a, e, new float[k.V * k.C]);

        // L = sum_i a_i logp_i + e_i H_i, in double from the (perturbed) inputs.
        double Loss(float[] xs, float[] ws)
        {
            Reference(k, xs, ws, null, null, out double[] lp, out double[] h, out _, out _);
            double sum = 0;
            for (int i = 0; i < k.N; i++)
            {
                sum += a[i] * lp[i] + e[i] * h[i];
            }

            return sum;
        }

        float[] x = (float[])k.X.Clone(), w = (float[])k.W.Clone();
        FiniteDifference.Check(x, dx, xp => Loss(xp, k.W), "dx", samples: 30, h: 1e-3, tol: 1e-3);
        FiniteDifference.Check(w, dw, wp => Loss(k.X, wp), "dW", samples: 40, h: 1e-3, tol: 1e-3);
    }

    [Theory]
    [InlineData(1, 16, 37, 0, 0.0)]
    [InlineData(23, 12, 97, 5, 0.3)]
    [InlineData(8, 9, 37, 1, 0.5)]
    public void ForwardBackward_EqualsSeparateForwardAndBackward(int n, int c, int v, int rowsPerBlock, double skip)
    {
        Case k = MakeCase(80 + n, n, c, v, skip);
        float[] dlogp = TestData.Uniform(81, n);
        float[] dw0 = TestData.Uniform(82, (long)v * c);
        using CpuAccelerator acc = Device(2, k, rowsPerBlock);
        (float[] logp, float[] dx, float[] dw) = Fused(acc, k, dlogp, dw0);
        (float[] logpF, _) = Forward(acc, k);
        (float[] dxB, float[] dwB) = Backward(acc, k, dlogp, null, dw0);
        AssertBitwise(logpF, logp, "logp");
        AssertBitwise(dxB, dx, "dx");
        AssertBitwise(dwB, dw, "dw");

        Reference(k, k.X, k.W, dlogp, null, out double[] rl, out _, out double[] rdx, out double[] rdw);
        Compare.Close(rl, logp, 2e-6, "fused logp");
        Compare.Close(rdx, dx, 5e-6, "fused dx");
        Compare.Close(Plus(dw0, rdw), dw, 5e-6, "fused dw");
    }

    [Fact]
    public void Backward_AccumulatesIntoDw()
    {
        Case k = MakeCase(90, 6, 10, 37);
        float[] dlogp = TestData.Uniform(91, k.N);
        float[] dentropy = TestData.Uniform(92, k.N);
        using CpuAccelerator acc = Device(2, k, 2);
        (_, float[] once) = Backward(acc, k, dlogp, dentropy, new float[k.V * k.C]);
        (_, float[] twice) = Backward(acc, k, dlogp, dentropy, once);
        var doubled = new double[once.Length];
        for (int i = 0; i < once.Length; i++)
        {
            doubled[i] = 2.0 * once[i];
        }

        Compare.Close(doubled, twice, 1e-6, "dw after two calls");
        (_, _, float[] fusedTwice) = Fused(acc, k, dlogp, once);
        Reference(k, k.X, k.W, dlogp, null, out _, out _, out _, out double[] rdw);
        Compare.Close(Plus(once, rdw), fusedTwice, 5e-6, "fused dw onto a non-zero start");
    }

    [Fact]
    public void AllRowsSkipped_WritesZerosAndLeavesDwAlone()
    {
        var k = new Case(4, 6, 37, TestData.Uniform(100, 24), TestData.Uniform(101, 37 * 6), [-1, -100, -1, -5]);
        float[] dw0 = TestData.Uniform(102, 37 * 6);
        using CpuAccelerator acc = Device(2, k, 0);
        (float[] logp, float[] entropy) = Forward(acc, k);
        (float[] dx, float[] dw) = Backward(acc, k, TestData.Uniform(103, 4), TestData.Uniform(104, 4), dw0);
        (float[] logpF, float[] dxF, float[] dwF) = Fused(acc, k, TestData.Uniform(103, 4), dw0);
        Assert.All(logp, p => Assert.Equal(0f, p));
        Assert.All(entropy, p => Assert.Equal(0f, p));
        Assert.All(logpF, p => Assert.Equal(0f, p));
        Assert.All(dx, p => Assert.Equal(0f, p));
        Assert.All(dxF, p => Assert.Equal(0f, p));
        AssertBitwise(dw0, dw, "dw");
        AssertBitwise(dw0, dwF, "fused dw");
    }

    [Fact]
    public void VectorExp_IsAccurateAndUnderflowsToZero()
    {
        double worst512 = 0, worst256 = 0;
        for (int i = 0; i <= 200_000; i++)
        {
            float x = (float)(88.0 - i * (175.0 / 200_000));  // [-87, 88]
            double expected = Math.Exp(x);
            worst512 = Math.Max(worst512, Math.Abs(LogSoftmaxRows.Exp(Vector512.Create(x)).ToScalar() - expected) / expected);
            worst256 = Math.Max(worst256, Math.Abs(LogSoftmaxRows.Exp(Vector256.Create(x)).ToScalar() - expected) / expected);
        }

        Assert.True(worst512 <= 3e-7, $"Vector512 exp relative error {worst512:E2}");
        Assert.True(worst256 <= 3e-7, $"Vector256 exp relative error {worst256:E2}");
        Assert.Equal(1f, LogSoftmaxRows.Exp(Vector512.Create(0f)).ToScalar());
        Assert.Equal(0f, LogSoftmaxRows.Exp(Vector512.Create(-90f)).ToScalar());
        Assert.Equal(0f, LogSoftmaxRows.Exp(Vector256.Create(-1000f)).ToScalar());
    }

    [Fact]
    public void TargetOutsideVocabulary_Throws()
    {
        var k = new Case(2, 4, 37, TestData.Uniform(110, 8), TestData.Uniform(111, 37 * 4), [3, 37]);
        using CpuAccelerator acc = Device(1, k, 0);
        Assert.ThrowsAny<ArgumentException>(() => Forward(acc, k));
    }

    [Fact]
    public void LargeLogits_StayFiniteAndExact()
    {
        // Logits of several hundred: exp without the max subtracted would overflow.
        Case k = MakeCase(120, 6, 32, 97, skipFraction: 0.2, xScale: 50f);
        float[] dlogp = TestData.Uniform(121, k.N);
        float[] dentropy = TestData.Uniform(122, k.N);
        using CpuAccelerator acc = Device(2, k, 2);
        (float[] logp, float[] entropy) = Forward(acc, k);
        (float[] dx, float[] dw) = Backward(acc, k, dlogp, dentropy, new float[k.V * k.C]);
        Assert.All(logp, p => Assert.True(float.IsFinite(p)));
        Assert.All(entropy, p => Assert.True(float.IsFinite(p)));
        Reference(k, k.X, k.W, dlogp, dentropy, out double[] rl, out double[] re, out double[] rdx, out double[] rdw);
        Assert.Contains(rl, p => p < -100);  // the case really has large logits
        Compare.Close(rl, logp, 2e-6, "logp");

        // Entropies of near one-hot rows are tiny: judge them on the scale of the logits' spread.
        for (int i = 0; i < k.N; i++)
        {
            Assert.True(Math.Abs(entropy[i] - re[i]) <= 1e-5 * Math.Max(1, Math.Abs(rl[i])), $"entropy[{i}]: {entropy[i]} vs {re[i]}");
        }

        Compare.Close(rdx, dx, 1e-5, "dx");
        Compare.Close(rdw, dw, 1e-5, "dw");
    }

    [Fact]
    public void Results_AreBitIdenticalForOneAndTwoThreads()
    {
        Case k = MakeCase(130, 37, 24, 1031, skipFraction: 0.2);
        float[] dlogp = TestData.Uniform(131, k.N);
        float[] dentropy = TestData.Uniform(132, k.N);
        float[] dw0 = TestData.Uniform(133, (long)k.V * k.C);
        using CpuAccelerator one = Device(1, k, 8), two = Device(2, k, 8);
        (float[] l1, float[] e1) = Forward(one, k);
        (float[] l2, float[] e2) = Forward(two, k);
        AssertBitwise(l1, l2, "logp");
        AssertBitwise(e1, e2, "entropy");
        (float[] dx1, float[] dw1) = Backward(one, k, dlogp, dentropy, dw0);
        (float[] dx2, float[] dw2) = Backward(two, k, dlogp, dentropy, dw0);
        AssertBitwise(dx1, dx2, "dx");
        AssertBitwise(dw1, dw2, "dw");
        (float[] fl1, float[] fdx1, float[] fdw1) = Fused(one, k, dlogp, dw0);
        (float[] fl2, float[] fdx2, float[] fdw2) = Fused(two, k, dlogp, dw0);
        AssertBitwise(fl1, fl2, "fused logp");
        AssertBitwise(fdx1, fdx2, "fused dx");
        AssertBitwise(fdw1, fdw2, "fused dw");
    }
}
