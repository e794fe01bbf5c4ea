using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// CPU GEMM (packed path, small-m path, every kernel set) and the bias gradient, against
/// double-precision references written here.
/// </summary>
public sealed unsafe class GemmTests : IDisposable
{
    private readonly CpuAccelerator acc = TestDevices.Cpu(2);
    private readonly CpuAccelerator single = TestDevices.Cpu(1);

    public void Dispose()
    {
        acc.Dispose();
        single.Dispose();
    }

    /// <summary>Shapes (m, n, k): tiny, odd, exact 12 x 32 tiles, across MR/NR/KC/MC, across the small-m threshold.</summary>
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 },
        { 7, 13, 5 },
        { 33, 65, 17 },
        { 24, 64, 256 },     // whole 12 x 32 tiles, exactly one KC block
        { 13, 33, 257 },     // one past MR, NR and KC
        { 145, 40, 70 },     // one row past MC = 144
        { 150, 97, 513 },    // three KC blocks, edge tiles everywhere
        { 1, 300, 33 },      // single row (small-m, B transposed in registers when transB)
        { 3, 37, 70 },
        { 4, 36, 16 },
        { 5, 200, 100 },
        { 64, 41, 71 },      // largest small-m
        { 65, 41, 71 },      // smallest packed
        { 70, 4099, 9 },     // two column chunks (NC = 4096)
        { 5, 2100, 2000 },   // small-m with weights past the cache size (prefetched)
    };

    /// <summary>Every shape under every transpose combination.</summary>
    public static TheoryData<int, int, int, bool, bool> ShapesAndTransposes
    {
        get
        {
            var data = new TheoryData<int, int, int, bool, bool>();
            foreach (var row in Shapes)
            {
                var (m, n, k) = ((int)row[0], (int)row[1], (int)row[2]);
                foreach (bool ta in new[] { false, true })
                {
                    foreach (bool tb in new[] { false, true })
                    {
                        data.Add(m, n, k, ta, tb);
                    }
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ShapesAndTransposes))]
    public void Product_matches_double_reference(int m, int n, int k, bool transA, bool transB)
    {
        var (a, b) = Operands(m, n, k, seed: m * 31 + n * 7 + k);
        float[] c = Run(acc, a, b, null, null, m, n, k, transA, transB, 1f, 0f);
        Compare.Close(Reference(a, b, null, null, m, n, k, transA, transB, 1f, 0f), c, Bound(k),
            $"C[{m},{n}] k={k} tA={transA} tB={transB}");
    }

    [Theory]
    [InlineData(2f, 0f, true)]
    [InlineData(-0.5f, 0.75f, false)]
    [InlineData(1.5f, -2f, true)]
    [InlineData(1f, 1f, true)]
    public void Alpha_beta_and_bias_are_applied(float alpha, float beta, bool withBias)
    {
        // A packed shape over three KC blocks and two small-m shapes.
        foreach (var (m, n, k) in new[] { (150, 97, 600), (5, 70, 45), (64, 33, 300) })
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    var (a, b) = Operands(m, n, k, seed: 3);
                    float[] c0 = TestData.Uniform(4, (long)m * n);
                    float[]? bias = withBias ? TestData.Uniform(5, n) : null;
                    float[] c = Run(acc, a, b, c0, bias, m, n, k, ta, tb, alpha, beta);
                    Compare.Close(Reference(a, b, c0, bias, m, n, k, ta, tb, alpha, beta), c, Bound(k),
                        $"C[{m},{n}] k={k} tA={ta} tB={tb} alpha={alpha} beta={beta} bias={withBias}");
                }
            }
        }
    }

    [Theory]
    [InlineData(150, 97, 300)]
    [InlineData(13, 33, 20)]
    [InlineData(1, 50, 40)]
    public void Beta_zero_never_reads_C(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
        {
            foreach (bool tb in new[] { false, true })
            {
                var (a, b) = Operands(m, n, k, seed: 11);
                float[] nan = new float[m * n];
                Array.Fill(nan, float.NaN);
                float[] bias = TestData.Uniform(12, n);
                float[] c = Run(acc, a, b, nan, bias, m, n, k, ta, tb, 0.5f, 0f);
                Compare.Close(Reference(a, b, null, bias, m, n, k, ta, tb, 0.5f, 0f), c, Bound(k),
                    $"NaN C, beta 0, C[{m},{n}] tA={ta} tB={tb}");
            }
        }
    }

    [Fact]
    public void Weight_gradient_accumulates_with_beta_one()
    {
        // dW[O, I] += dY[N, O]^T X[N, I], twice: the second call must add onto the first.
        const int rows = 77, o = 45, i = 70;
        float[] dy = TestData.Uniform(21, rows * o);
        float[] x = TestData.Uniform(22, rows * i);
        float[] dw0 = TestData.Uniform(23, o * i);
        float[] once = Run(acc, dy, x, dw0, null, o, i, rows, transA: true, transB: false, 1f, 1f);
        float[] twice = Run(acc, dy, x, once, null, o, i, rows, transA: true, transB: false, 1f, 1f);
        double[] expected = Reference(dy, x, dw0, null, o, i, rows, true, false, 2f, 1f);
        Compare.Close(expected, twice, Bound(rows), "dW accumulated twice");
    }

    [Fact]
    public void Training_forms_give_finite_difference_gradients()
    {
        // Y[N, O] = X[N, I] W[O, I]^T + b, L = sum(g * Y); dX = g W, dW = g^T X, db = colsum(g).
        const int rows = 9, inputs = 13, outputs = 7;
        float[] x = TestData.Uniform(31, rows * inputs);
        float[] w = TestData.Uniform(32, outputs * inputs);
        float[] bias = TestData.Uniform(33, outputs);
        float[] g = TestData.Uniform(34, rows * outputs);

        float[] dx = Run(acc, g, w, null, null, rows, inputs, outputs, false, false, 1f, 0f);
        float[] dw = Run(acc, g, x, null, null, outputs, inputs, rows, true, false, 1f, 0f);
        using DeviceBuffer gb = acc.Put(g);
        using DeviceBuffer dbb = acc.Put(new float[outputs]);
        acc.BiasBackward(dbb.All, gb.All, rows, outputs);
        float[] db = acc.Get(dbb);

        double Loss(float[] xs, float[] ws, float[] bs)
        {
            float[] y = Run(acc, xs, ws, null, bs, rows, outputs, inputs, false, true, 1f, 0f);
            double l = 0;
            for (int t = 0; t < y.Length; t++)
            {
                l += (double)g[t] * y[t];
            }

            return l;
        }

        FiniteDifference.Check(x, dx, xs => Loss(xs, w, bias), "dX");
        FiniteDifference.Check(w, dw, ws => Loss(x, ws, bias), "dW");
        FiniteDifference.Check(bias, db, bs => Loss(x, w, bs), "db");
    }

    [Theory]
    [InlineData(300, 200, 600)]
    [InlineData(700, 100, 40)]
    [InlineData(40, 300, 300)]
    [InlineData(1, 129, 70)]
    public void One_and_two_threads_agree_bit_for_bit(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
        {
            foreach (bool tb in new[] { false, true })
            {
                var (a, b) = Operands(m, n, k, seed: 41);
                float[] c0 = TestData.Uniform(42, (long)m * n);
                float[] bias = TestData.Uniform(43, n);
                float[] one = Run(single, a, b, c0, bias, m, n, k, ta, tb, 0.7f, 0.3f);
                float[] two = Run(acc, a, b, c0, bias, m, n, k, ta, tb, 0.7f, 0.3f);
                Assert.True(one.AsSpan().SequenceEqual(two), $"C[{m},{n}] k={k} tA={ta} tB={tb} differs between 1 and 2 threads");
            }
        }
    }

    [Fact]
    public void Writes_only_the_C_view()
    {
        // C is a view in the middle of a sentinel-filled buffer; edge tiles must not spill.
        const int m = 13, n = 35, k = 20, pad = 100;
        foreach (bool tb in new[] { false, true })
        {
            var (a, b) = Operands(m, n, k, seed: 51);
            using DeviceBuffer ab = acc.Put(a);
            using DeviceBuffer bb = acc.Put(b);
            float[] big = new float[pad + m * n + pad];
            Array.Fill(big, 12345f);
            using DeviceBuffer cb = acc.Put(big);
            acc.Gemm(cb.Slice(pad, m * n), ab.All, bb.All, m, n, k, false, tb);
            float[] after = acc.Get(cb);
            for (int t = 0; t < pad; t++)
            {
                Assert.Equal(12345f, after[t]);
                Assert.Equal(12345f, after[pad + m * n + t]);
            }

            Compare.Close(Reference(a, b, null, null, m, n, k, false, tb, 1f, 0f), after.AsSpan(pad, m * n), Bound(k), "C view");
        }
    }

    /// <summary>Kernel sets this machine can run: the narrower ones are checked here on any SIMD machine.</summary>
    public static TheoryData<int> Isas
    {
        get
        {
            var data = new TheoryData<int>();
            for (GemmIsa isa = GemmIsa.Scalar; isa <= CpuGemm.BestIsa; isa++)
            {
                data.Add((int)isa);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Isas))]
    public void Every_kernel_set_matches_the_reference(int isaIndex)
    {
        var isa = (GemmIsa)isaIndex;
        foreach (var (m, n, k) in new[] { (1, 1, 1), (13, 33, 257), (150, 37, 90), (3, 41, 37), (64, 20, 19) })
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    var (a, b) = Operands(m, n, k, seed: 61);
                    float[] c0 = TestData.Uniform(62, (long)m * n);
                    float[] bias = TestData.Uniform(63, n);
                    float[] c = RunDirect(isa, a, b, c0, bias, m, n, k, ta, tb, 1.25f, 0.5f);
                    Compare.Close(Reference(a, b, c0, bias, m, n, k, ta, tb, 1.25f, 0.5f), c, Bound(k),
                        $"{isa} C[{m},{n}] k={k} tA={ta} tB={tb}");
                }
            }
        }
    }

    [Fact]
    public void Packing_B_one_k_block_at_a_time_changes_nothing()
    {
        // With a packed-B budget of one block, each of the three k blocks is packed and run by its
        // own pair of parallel loops instead of one: the bits must be the same.
        const int m = 100, n = 70, k = 1600;
        foreach (bool ta in new[] { false, true })
        {
            foreach (bool tb in new[] { false, true })
            {
                var (a, b) = Operands(m, n, k, seed: 81);
                float[] c0 = TestData.Uniform(82, m * n);
                float[] bias = TestData.Uniform(83, n);
                float[] grouped = RunDirect(CpuGemm.BestIsa, a, b, c0, bias, m, n, k, ta, tb, 1f, 1f);
                float[] blockwise = RunDirect(CpuGemm.BestIsa, a, b, c0, bias, m, n, k, ta, tb, 1f, 1f, packedBudget: 1);
                Compare.Close(Reference(a, b, c0, bias, m, n, k, ta, tb, 1f, 1f), blockwise, Bound(k), $"tA={ta} tB={tb}");
                Assert.True(grouped.AsSpan().SequenceEqual(blockwise), $"tA={ta} tB={tb}: grouping of k blocks changed the result");
            }
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 77)]
    [InlineData(33, 200)]
    [InlineData(128, 1000)]
    public void Bias_backward_matches_reference(int rows, int cols)
    {
        float[] dy = TestData.Uniform(71, (long)rows * cols);
        float[] db0 = TestData.Uniform(72, cols);
        var expected = new double[cols];
        for (int j = 0; j < cols; j++)
        {
            double s = db0[j];
            for (int r = 0; r < rows; r++)
            {
                s += dy[(long)r * cols + j];
            }

            expected[j] = s;
        }

        float[] two = BiasBackward(acc, dy, db0, rows, cols);
        float[] one = BiasBackward(single, dy, db0, rows, cols);
        Compare.Close(expected, two, 1e-5, $"db[{cols}] over {rows} rows");
        Assert.True(one.AsSpan().SequenceEqual(two), "bias gradient differs between 1 and 2 threads");
    }

    private static float[] BiasBackward(CpuAccelerator device, float[] dy, float[] db0, int rows, int cols)
    {
        using DeviceBuffer dyb = device.Put(dy);
        using DeviceBuffer dbb = device.Put(db0);
        device.BiasBackward(dbb.All, dyb.All, rows, cols);
        return device.Get(dbb);
    }

    /// <summary>Bound on the normalised max error of a float product of inner size k.</summary>
    private static double Bound(int k) => 2e-6 * Math.Sqrt(k) + 1e-6;

    private static (float[] A, float[] B) Operands(int m, int n, int k, int seed) =>
        (TestData.Uniform(seed, (long)m * k), TestData.Uniform(seed + 1, (long)k * n));

    private static float[] Run(CpuAccelerator device, float[] a, float[] b, float[]? c0, float[]? bias,
        int m, int n, int k, bool transA, bool transB, float alpha, float beta)
    {
        using DeviceBuffer ab = device.Put(a);
        using DeviceBuffer bb = device.Put(b);
        using DeviceBuffer cb = device.Put(c0 ?? new float[m * n]);
        using DeviceBuffer? biasb = bias is null ? null : device.Put(bias);
        device.Gemm(cb.All, ab.All, bb.All, m, n, k, transA, transB, alpha, beta, biasb?.All ?? default);
        return device.Get(cb);
    }

    private float[] RunDirect(GemmIsa isa, float[] a, float[] b, float[] c0, float[] bias,
        int m, int n, int k, bool transA, bool transB, float alpha, float beta, long packedBudget = 4L << 20)
    {
        float[] c = (float[])c0.Clone();
        fixed (float* pa = a, pb = b, pc = c, pbias = bias)
        {
            CpuGemm.Multiply(acc.Pool, pc, pa, pb, m, n, k, transA, transB, alpha, beta, pbias, isa, packedBudget);
        }

        return c;
    }

    /// <summary>alpha * op(A) op(B) + beta * C0 + bias in double precision (C0 null: zeros, never read).</summary>
    private static double[] Reference(float[] a, float[] b, float[]? c0, float[]? bias, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = transA ? a[(long)p * m + i] : a[(long)i * k + p];
                    double bv = transB ? b[(long)j * k + p] : b[(long)p * n + j];
                    s += av * bv;
                }

                double v = alpha * s;
                if (c0 is not null && beta != 0)
                {
                    v += beta * (double)c0[i * n + j];
                }

                if (bias is not null)
                {
                    v += bias[j];
                }

                c[i * n + j] = v;
            }
        }

        return c;
    }
}

/// <summary>
/// Batch invariance: every element of C must be a function of its row of op(A), its column of
/// op(B), k, alpha, beta, the bias and the old C only, bit for bit, whatever the number of rows
/// (and so the path: small-m, transposed small-m or packed), the row's position, the columns
/// beside it, the transposes and the thread count. The sampler decodes a few rows at a time while
/// training runs thousands, and both must give the same bits for the same row.
/// </summary>
public sealed unsafe class GemmBatchInvarianceTests : IDisposable
{
    private readonly CpuAccelerator two = TestDevices.Cpu(2);
    private readonly CpuAccelerator one = TestDevices.Cpu(1);

    public void Dispose()
    {
        two.Dispose();
        one.Dispose();
    }

    /// <summary>Numbers of rows of the sub-batches: both small-m kernels, both sides of every row group and of the small-m limit.</summary>
    private static readonly int[] BatchRows = [1, 2, 3, 5, 13, 16, 17, 64, 65];

    [Theory]
    [InlineData(false, true, 300, 96, 200)]
    [InlineData(false, true, 130, 770, 1000)]   // two k blocks
    [InlineData(false, false, 150, 64, 96)]
    [InlineData(true, false, 140, 80, 33)]
    [InlineData(true, true, 100, 45, 1700)]     // three k blocks of 567, n not a multiple of 8
    [InlineData(false, true, 90, 100, 7)]       // k shorter than a vector
    [InlineData(false, false, 80, 33, 1100)]
    [InlineData(true, false, 70, 130, 769)]     // one past a k block
    public void Each_row_is_the_same_whatever_the_rows_beside_it(bool transA, bool transB, int m, int n, int k)
    {
        float[] a = TestData.Uniform(1, (long)m * k);
        float[] b = TestData.Uniform(2, (long)k * n);
        float[] bias = TestData.Uniform(3, n);
        float[] full = Multiply(two, CpuGemm.BestIsa, a, b, null, bias, m, n, k, transA, transB, 1f, 0f);
        foreach (int rows in BatchRows)
        {
            for (int start = 0; start + rows <= m; start += 37)
            {
                float[] c = Multiply(one, CpuGemm.BestIsa, RowsOf(a, start, rows, k), b, null, bias, rows, n, k, transA, transB, 1f, 0f);
                AssertRowsEqual(full, start, c, rows, n, $"tA={transA} tB={transB} rows [{start}, {start + rows}) of {m}");
            }
        }
    }

    [Theory]
    [InlineData(1f, 0f, false)]
    [InlineData(1f, 0f, true)]
    [InlineData(0.5f, 1f, false)]
    [InlineData(1.25f, 0.75f, true)]
    [InlineData(-2f, -0.5f, true)]
    public void Alpha_beta_and_bias_keep_rows_independent(float alpha, float beta, bool withBias)
    {
        const int m = 100, n = 70, k = 1000;
        float[] a = TestData.Uniform(11, (long)m * k);
        float[] b = TestData.Uniform(12, (long)k * n);
        float[] c0 = TestData.Uniform(13, (long)m * n);
        float[]? bias = withBias ? TestData.Uniform(14, n) : null;
        foreach (bool tb in new[] { true, false })
        {
            float[] full = Multiply(two, CpuGemm.BestIsa, a, b, c0, bias, m, n, k, false, tb, alpha, beta);
            foreach (int rows in new[] { 1, 2, 7, 64 })
            {
                int start = m - rows - 3;
                float[] c = Multiply(one, CpuGemm.BestIsa, RowsOf(a, start, rows, k), b, RowsOf(c0, start, rows, n), bias,
                    rows, n, k, false, tb, alpha, beta);
                AssertRowsEqual(full, start, c, rows, n, $"tB={tb} alpha={alpha} beta={beta} bias={withBias} rows={rows}");
            }
        }
    }

    [Theory]
    [InlineData(1, 100, 300)]
    [InlineData(2, 64, 40)]
    [InlineData(9, 77, 1000)]
    [InlineData(40, 50, 800)]
    [InlineData(200, 45, 70)]
    public void The_four_transpose_forms_give_the_same_bits(int m, int n, int k)
    {
        float[] a = TestData.Uniform(21, (long)m * k);
        float[] b = TestData.Uniform(22, (long)k * n);
        float[] c0 = TestData.Uniform(23, (long)m * n);
        float[] bias = TestData.Uniform(24, n);
        float[] reference = Multiply(two, CpuGemm.BestIsa, a, b, c0, bias, m, n, k, false, false, 0.9f, 0.4f);
        foreach (var (ta, tb) in new[] { (false, true), (true, false), (true, true) })
        {
            float[] c = Multiply(two, CpuGemm.BestIsa, a, b, c0, bias, m, n, k, ta, tb, 0.9f, 0.4f);
            AssertRowsEqual(reference, 0, c, m, n, $"C[{m},{n}] k={k} tA={ta} tB={tb} vs NN");
        }
    }

    [Theory]
    [InlineData(1, 300, 200)]
    [InlineData(2, 200, 96)]
    [InlineData(12, 150, 800)]
    [InlineData(100, 300, 100)]
    public void Each_column_is_the_same_whatever_the_columns_beside_it(int m, int n, int k)
    {
        float[] a = TestData.Uniform(31, (long)m * k);
        float[] b = TestData.Uniform(32, (long)k * n);
        float[] bias = TestData.Uniform(33, n);
        foreach (bool tb in new[] { true, false })
        {
            float[] full = Multiply(two, CpuGemm.BestIsa, a, b, null, bias, m, n, k, false, tb, 1f, 0f);
            foreach (var (j0, cols) in new[] { (0, 1), (5, 31), (33, 40), (n - 65, 65) })
            {
                // op(B)[k, cols] and bias[cols] from column j0
                float[] part = new float[(long)k * cols];
                for (int p = 0; p < k; p++)
                {
                    Array.Copy(b, (long)p * n + j0, part, (long)p * cols, cols);
                }

                float[] c = Multiply(one, CpuGemm.BestIsa, a, part, null, bias.AsSpan(j0, cols).ToArray(), m, cols, k, false, tb, 1f, 0f);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < cols; j++)
                    {
                        float x = full[(long)i * n + j0 + j], y = c[(long)i * cols + j];
                        Assert.True(BitConverter.SingleToInt32Bits(x) == BitConverter.SingleToInt32Bits(y),
                            $"m={m} tB={tb} columns [{j0}, {j0 + cols}): C[{i},{j0 + j}] differs ({x:R} vs {y:R})");
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(13)]
    [InlineData(64)]
    [InlineData(130)]
    public void Rows_in_reverse_order_give_the_same_rows(int m)
    {
        const int n = 90, k = 300;
        float[] a = TestData.Uniform(41, (long)m * k);
        float[] b = TestData.Uniform(42, (long)k * n);
        float[] reversed = new float[a.Length];
        for (int i = 0; i < m; i++)
        {
            Array.Copy(a, (long)i * k, reversed, (long)(m - 1 - i) * k, k);
        }

        foreach (bool tb in new[] { true, false })
        {
            float[] c = Multiply(two, CpuGemm.BestIsa, a, b, null, null, m, n, k, false, tb, 1f, 0f);
            float[] r = Multiply(two, CpuGemm.BestIsa, reversed, b, null, null, m, n, k, false, tb, 1f, 0f);
            for (int i = 0; i < m; i++)
            {
                AssertRowsEqual(c, i, r.AsSpan((m - 1 - i) * n, n).ToArray(), 1, n, $"m={m} tB={tb} row {i} reversed");
            }
        }
    }

    /// <summary>Kernel sets this machine can run: the narrower ones have their own register tiles and small-m kernels.</summary>
    public static TheoryData<int> Isas
    {
        get
        {
            var data = new TheoryData<int>();
            for (GemmIsa isa = GemmIsa.Scalar; isa <= CpuGemm.BestIsa; isa++)
            {
                data.Add((int)isa);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Isas))]
    public void Every_kernel_set_is_batch_invariant(int isaIndex)
    {
        var isa = (GemmIsa)isaIndex;
        const int m = 150, n = 75, k = 1100;
        float[] a = TestData.Uniform(51, (long)m * k);
        float[] b = TestData.Uniform(52, (long)k * n);
        float[] c0 = TestData.Uniform(53, (long)m * n);
        float[] bias = TestData.Uniform(54, n);
        foreach (bool tb in new[] { true, false })
        {
            float[] full = Multiply(two, isa, a, b, c0, bias, m, n, k, false, tb, 0.75f, 0.5f);
            foreach (int rows in new[] { 1, 2, 5, 9, 16, 64 })
            {
                int start = (m - rows) * 2 / 3;
                float[] c = Multiply(one, isa, RowsOf(a, start, rows, k), b, RowsOf(c0, start, rows, n), bias,
                    rows, n, k, false, tb, 0.75f, 0.5f);
                AssertRowsEqual(full, start, c, rows, n, $"{isa} tB={tb} rows [{start}, {start + rows})");
            }
        }
    }

    [Theory]
    [InlineData(150, 75, 1100)]
    [InlineData(2, 70, 1300)]
    [InlineData(40, 33, 700)]
    public void Every_kernel_set_gives_the_same_bits(int m, int n, int k)
    {
        // The same FMA chains and k blocks whatever the vector width: a model trained on an AVX-512
        // machine and one trained with AVX2 (or no SIMD) are the same model. k past one block.
        float[] a = TestData.Uniform(61, (long)m * k);
        float[] b = TestData.Uniform(62, (long)k * n);
        float[] c0 = TestData.Uniform(63, (long)m * n);
        float[] bias = TestData.Uniform(64, n);
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false) })
        {
            float[] scalar = Multiply(two, GemmIsa.Scalar, a, b, c0, bias, m, n, k, ta, tb, 0.75f, 0.5f);
            for (GemmIsa isa = GemmIsa.Scalar + 1; isa <= CpuGemm.BestIsa; isa++)
            {
                float[] c = Multiply(two, isa, a, b, c0, bias, m, n, k, ta, tb, 0.75f, 0.5f);
                AssertRowsEqual(scalar, 0, c, m, n, $"{isa} vs scalar, tA={ta} tB={tb}");
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Decode_rows_are_the_same_for_every_thread_count(int rows)
    {
        // The transposed small-m kernel gives each thread one contiguous run of weight rows (many
        // 32-row panels, a ragged end) and prefetches ahead of every row: the bits must still be the
        // packed path's, with 1, 2 and 3 threads (a run boundary inside a panel with 3).
        const int m = 80, n = 1000, k = 1100;
        float[] a = TestData.Uniform(71, (long)m * k);
        float[] b = TestData.Uniform(72, (long)k * n);
        float[] bias = TestData.Uniform(73, n);
        float[] full = Multiply(two, CpuGemm.BestIsa, a, b, null, bias, m, n, k, false, true, 1f, 0f);
        using CpuAccelerator three = TestDevices.Cpu(3);
        foreach (CpuAccelerator device in new[] { one, two, three })
        {
            int start = m - rows - 7;
            float[] c = Multiply(device, CpuGemm.BestIsa, RowsOf(a, start, rows, k), b, null, bias, rows, n, k, false, true, 1f, 0f);
            AssertRowsEqual(full, start, c, rows, n, $"{device.Pool.ThreadCount} threads, rows [{start}, {start + rows})");
        }
    }

    /// <summary>Rows [start, start + rows) of a row-major matrix with <paramref name="width"/> columns.</summary>
    private static float[] RowsOf(float[] x, int start, int rows, int width) =>
        x.AsSpan(start * width, rows * width).ToArray();

    private static void AssertRowsEqual(float[] full, int start, float[] part, int rows, int n, string what)
    {
        for (int i = 0; i < rows * n; i++)
        {
            float x = full[(long)start * n + i], y = part[i];
            Assert.True(BitConverter.SingleToInt32Bits(x) == BitConverter.SingleToInt32Bits(y),
                $"{what}: C[{start + i / n},{i % n}] differs ({x:R} vs {y:R})");
        }
    }

    /// <summary>
    /// alpha * op(A) op(B) + beta * C0 + bias with op(A) given as rows [m, k] and op(B) as [k, n],
    /// stored transposed as the flags say.
    /// </summary>
    private static float[] Multiply(CpuAccelerator device, GemmIsa isa, float[] a, float[] b, float[]? c0, float[]? bias,
        int m, int n, int k, bool transA, bool transB, float alpha, float beta)
    {
        float[] sa = transA ? Transpose(a, m, k) : a;
        float[] sb = transB ? Transpose(b, k, n) : b;
        float[] c = c0 is null ? new float[(long)m * n] : (float[])c0.Clone();
        fixed (float* pa = sa, pb = sb, pc = c, pbias = bias)
        {
            CpuGemm.Multiply(device.Pool, pc, pa, pb, m, n, k, transA, transB, alpha, beta, pbias, isa);
        }

        return c;
    }

    /// <summary>x[rows, cols] transposed to [cols, rows].</summary>
    private static float[] Transpose(float[] x, int rows, int cols)
    {
        var t = new float[x.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                t[(long)c * rows + r] = x[(long)r * cols + c];
            }
        }

        return t;
    }
}
