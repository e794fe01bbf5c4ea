using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Kernels.Cpu;

/// <summary>
/// Building blocks of the attention kernels: a vector-width abstraction (Vector512, Vector256 or
/// scalar, chosen once per call so the JIT specialises every generic body), the small
/// register-blocked product used for every tile product, per-worker tile scratch and row helpers.
/// </summary>
internal static unsafe class AttentionSimd
{
    /// <summary>
    /// Vector operations over <typeparamref name="TV"/>; implemented by empty structs so calls through a
    /// generic struct parameter are resolved and inlined at JIT time.
    /// </summary>
    internal interface IOps<TV> where TV : struct
    {
        /// <summary>Floats per vector.</summary>
        static abstract int Width { get; }

        /// <summary>True when the register file holds a 4 x 4-vector accumulator block (AVX-512's 32 registers).</summary>
        static abstract bool ManyRegisters { get; }

        /// <summary>All lanes 0.</summary>
        static abstract TV Zero { get; }

        /// <summary>Loads Width floats (unaligned).</summary>
        static abstract TV Load(float* p);

        /// <summary>Stores Width floats (unaligned).</summary>
        static abstract void Store(float* p, TV v);

        /// <summary>x in every lane.</summary>
        static abstract TV Splat(float x);

        /// <summary>a * b + c, fused in every form.</summary>
        static abstract TV MulAdd(TV a, TV b, TV c);

        /// <summary>a * b.</summary>
        static abstract TV Mul(TV a, TV b);

        /// <summary>a - b.</summary>
        static abstract TV Sub(TV a, TV b);

        /// <summary>a + b.</summary>
        static abstract TV Add(TV a, TV b);

        /// <summary>Lane-wise maximum.</summary>
        static abstract TV Max(TV a, TV b);

        /// <summary>Lane-wise e^a (exactly 0 for a below about -87.3, including -inf).</summary>
        static abstract TV Exp(TV a);

        /// <summary>a with every zero lane made +0 (a -0 becomes +0; everything else is unchanged).</summary>
        static abstract TV PlusZero(TV a);
    }

    /// <summary>AVX-512: 16 floats.</summary>
    internal readonly struct V512 : IOps<Vector512<float>>
    {
        public static int Width => 16;

        public static bool ManyRegisters => true;

        public static Vector512<float> Zero => Vector512<float>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* p) => Vector512.Load(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(float* p, Vector512<float> v) => v.Store(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Splat(float x) => Vector512.Create(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> MulAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
            Vector512.FusedMultiplyAdd(a, b, c);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Exp(Vector512<float> a) => ExpApprox.Exp(a);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> PlusZero(Vector512<float> a) =>
            Vector512.ConditionalSelect(Vector512.Equals(a, Vector512<float>.Zero), Vector512<float>.Zero, a);
    }

    /// <summary>AVX2: 8 floats.</summary>
    internal readonly struct V256 : IOps<Vector256<float>>
    {
        public static int Width => 8;

        public static bool ManyRegisters => false;

        public static Vector256<float> Zero => Vector256<float>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* p) => Vector256.Load(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(float* p, Vector256<float> v) => v.Store(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Splat(float x) => Vector256.Create(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> MulAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
            Vector256.FusedMultiplyAdd(a, b, c);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Exp(Vector256<float> a) => ExpApprox.Exp(a);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> PlusZero(Vector256<float> a) =>
            Vector256.ConditionalSelect(Vector256.Equals(a, Vector256<float>.Zero), Vector256<float>.Zero, a);
    }

    /// <summary>No usable SIMD: one float per "vector", each lane's arithmetic that of the vector forms (fused, the same exp).</summary>
    internal readonly struct Scalar : IOps<float>
    {
        public static int Width => 1;

        public static bool ManyRegisters => true;

        public static float Zero => 0f;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load(float* p) => *p;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(float* p, float v) => *p = v;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Splat(float x) => x;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float MulAdd(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Mul(float a, float b) => a * b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Sub(float a, float b) => a - b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Add(float a, float b) => a + b;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Max(float a, float b) => MathF.Max(a, b);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Exp(float a) => ExpApprox.Exp(a);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float PlusZero(float a) => a == 0 ? 0f : a;
    }

    /// <summary>
    /// Four rows of a small product: <c>C[r, c] (+)= sum_k A[r*sar + k*sak] * B[k*ldb + c]</c> for r &lt; 4,
    /// k &lt; kn and c in [col0, col1). Column bounds are multiples of the vector width; A is read by
    /// scalar broadcasts so it may be strided either way (a row-major tile or a transposed one);
    /// every row of A and C it touches must exist. With <paramref name="accumulate"/> false C is only written.
    /// Summation order over k is fixed (ascending), so results never depend on threading.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Rows4<TV, TS>(float* c, int ldc, float* a, int sar, int sak, float* b, int ldb, int kn,
        int col0, int col1, bool accumulate)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        int col = col0;
        if (TS.ManyRegisters)
        {
            for (; col + (4 * w) <= col1; col += 4 * w)
            {
                Block4x4<TV, TS>(c + col, ldc, a, sar, sak, b + col, ldb, kn, accumulate);
            }
        }

        for (; col + (2 * w) <= col1; col += 2 * w)
        {
            Block4x2<TV, TS>(c + col, ldc, a, sar, sak, b + col, ldb, kn, accumulate);
        }

        if (col < col1)
        {
            Block4x1<TV, TS>(c + col, ldc, a, sar, sak, b + col, ldb, kn, accumulate);
        }
    }

    private static void Block4x4<TV, TS>(float* c, int ldc, float* a, int sar, int sak, float* b, int ldb, int kn, bool accumulate)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        float* c0 = c, c1 = c + ldc, c2 = c + (2 * ldc), c3 = c + (3 * ldc);
        TV x00, x01, x02, x03, x10, x11, x12, x13, x20, x21, x22, x23, x30, x31, x32, x33;
        if (accumulate)
        {
            x00 = TS.Load(c0); x01 = TS.Load(c0 + w); x02 = TS.Load(c0 + (2 * w)); x03 = TS.Load(c0 + (3 * w));
            x10 = TS.Load(c1); x11 = TS.Load(c1 + w); x12 = TS.Load(c1 + (2 * w)); x13 = TS.Load(c1 + (3 * w));
            x20 = TS.Load(c2); x21 = TS.Load(c2 + w); x22 = TS.Load(c2 + (2 * w)); x23 = TS.Load(c2 + (3 * w));
            x30 = TS.Load(c3); x31 = TS.Load(c3 + w); x32 = TS.Load(c3 + (2 * w)); x33 = TS.Load(c3 + (3 * w));
        }
        else
        {
            x00 = x01 = x02 = x03 = x10 = x11 = x12 = x13 = TS.Zero;
            x20 = x21 = x22 = x23 = x30 = x31 = x32 = x33 = TS.Zero;
        }

        for (int k = 0; k < kn; k++)
        {
            float* bk = b + ((long)k * ldb);
            float* ak = a + ((long)k * sak);
            TV b0 = TS.Load(bk), b1 = TS.Load(bk + w), b2 = TS.Load(bk + (2 * w)), b3 = TS.Load(bk + (3 * w));
            TV a0 = TS.Splat(ak[0]);
            x00 = TS.MulAdd(a0, b0, x00); x01 = TS.MulAdd(a0, b1, x01); x02 = TS.MulAdd(a0, b2, x02); x03 = TS.MulAdd(a0, b3, x03);
            TV a1 = TS.Splat(ak[sar]);
            x10 = TS.MulAdd(a1, b0, x10); x11 = TS.MulAdd(a1, b1, x11); x12 = TS.MulAdd(a1, b2, x12); x13 = TS.MulAdd(a1, b3, x13);
            TV a2 = TS.Splat(ak[2 * sar]);
            x20 = TS.MulAdd(a2, b0, x20); x21 = TS.MulAdd(a2, b1, x21); x22 = TS.MulAdd(a2, b2, x22); x23 = TS.MulAdd(a2, b3, x23);
            TV a3 = TS.Splat(ak[3 * sar]);
            x30 = TS.MulAdd(a3, b0, x30); x31 = TS.MulAdd(a3, b1, x31); x32 = TS.MulAdd(a3, b2, x32); x33 = TS.MulAdd(a3, b3, x33);
        }

        TS.Store(c0, x00); TS.Store(c0 + w, x01); TS.Store(c0 + (2 * w), x02); TS.Store(c0 + (3 * w), x03);
        TS.Store(c1, x10); TS.Store(c1 + w, x11); TS.Store(c1 + (2 * w), x12); TS.Store(c1 + (3 * w), x13);
        TS.Store(c2, x20); TS.Store(c2 + w, x21); TS.Store(c2 + (2 * w), x22); TS.Store(c2 + (3 * w), x23);
        TS.Store(c3, x30); TS.Store(c3 + w, x31); TS.Store(c3 + (2 * w), x32); TS.Store(c3 + (3 * w), x33);
    }

    private static void Block4x2<TV, TS>(float* c, int ldc, float* a, int sar, int sak, float* b, int ldb, int kn, bool accumulate)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        float* c0 = c, c1 = c + ldc, c2 = c + (2 * ldc), c3 = c + (3 * ldc);
        TV x00, x01, x10, x11, x20, x21, x30, x31;
        if (accumulate)
        {
            x00 = TS.Load(c0); x01 = TS.Load(c0 + w);
            x10 = TS.Load(c1); x11 = TS.Load(c1 + w);
            x20 = TS.Load(c2); x21 = TS.Load(c2 + w);
            x30 = TS.Load(c3); x31 = TS.Load(c3 + w);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = TS.Zero;
        }

        for (int k = 0; k < kn; k++)
        {
            float* bk = b + ((long)k * ldb);
            float* ak = a + ((long)k * sak);
            TV b0 = TS.Load(bk), b1 = TS.Load(bk + w);
            TV a0 = TS.Splat(ak[0]);
            x00 = TS.MulAdd(a0, b0, x00); x01 = TS.MulAdd(a0, b1, x01);
            TV a1 = TS.Splat(ak[sar]);
            x10 = TS.MulAdd(a1, b0, x10); x11 = TS.MulAdd(a1, b1, x11);
            TV a2 = TS.Splat(ak[2 * sar]);
            x20 = TS.MulAdd(a2, b0, x20); x21 = TS.MulAdd(a2, b1, x21);
            TV a3 = TS.Splat(ak[3 * sar]);
            x30 = TS.MulAdd(a3, b0, x30); x31 = TS.MulAdd(a3, b1, x31);
        }

        TS.Store(c0, x00); TS.Store(c0 + w, x01);
        TS.Store(c1, x10); TS.Store(c1 + w, x11);
        TS.Store(c2, x20); TS.Store(c2 + w, x21);
        TS.Store(c3, x30); TS.Store(c3 + w, x31);
    }

    private static void Block4x1<TV, TS>(float* c, int ldc, float* a, int sar, int sak, float* b, int ldb, int kn, bool accumulate)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        float* c0 = c, c1 = c + ldc, c2 = c + (2 * ldc), c3 = c + (3 * ldc);
        TV x0, x1, x2, x3;
        if (accumulate)
        {
            x0 = TS.Load(c0); x1 = TS.Load(c1); x2 = TS.Load(c2); x3 = TS.Load(c3);
        }
        else
        {
            x0 = x1 = x2 = x3 = TS.Zero;
        }

        for (int k = 0; k < kn; k++)
        {
            TV b0 = TS.Load(b + ((long)k * ldb));
            float* ak = a + ((long)k * sak);
            x0 = TS.MulAdd(TS.Splat(ak[0]), b0, x0);
            x1 = TS.MulAdd(TS.Splat(ak[sar]), b0, x1);
            x2 = TS.MulAdd(TS.Splat(ak[2 * sar]), b0, x2);
            x3 = TS.MulAdd(TS.Splat(ak[3 * sar]), b0, x3);
        }

        TS.Store(c0, x0); TS.Store(c1, x1); TS.Store(c2, x2); TS.Store(c3, x3);
    }

    /// <summary>
    /// <see cref="Rows4{TV, TS}"/> with accumulate for one row of C over columns [0, n) (n whole
    /// vectors): the same chain per element, without the three rows a lone query does not use.
    /// </summary>
    public static void Row1<TV, TS>(float* c, float* a, int sak, float* b, int ldb, int kn, int n)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        int col = 0;
        for (; col + (2 * w) <= n; col += 2 * w)
        {
            TV x0 = TS.Load(c + col), x1 = TS.Load(c + col + w);
            for (int k = 0; k < kn; k++)
            {
                float* bk = b + ((long)k * ldb) + col;
                TV a0 = TS.Splat(a[(long)k * sak]);
                x0 = TS.MulAdd(a0, TS.Load(bk), x0);
                x1 = TS.MulAdd(a0, TS.Load(bk + w), x1);
            }

            TS.Store(c + col, x0);
            TS.Store(c + col + w, x1);
        }

        if (col < n)
        {
            TV x0 = TS.Load(c + col);
            for (int k = 0; k < kn; k++)
            {
                x0 = TS.MulAdd(TS.Splat(a[(long)k * sak]), TS.Load(b + ((long)k * ldb) + col), x0);
            }

            TS.Store(c + col, x0);
        }
    }

    /// <summary>
    /// Sum of a[i] * b[i] for i &lt; n in the <see cref="LaneOrder"/> (16 logical lanes, as 16 / Width
    /// vectors, folded in the fixed tree), then a scalar tail: the same bits in every width.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot<TV, TS>(float* a, float* b, int n)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        const int lanes = LaneOrder.Lanes;
        int w = TS.Width;
        int i = 0;
        float sum = 0;
        if (n >= lanes)
        {
            float* acc = stackalloc float[lanes];
            for (int q = 0; q < lanes; q += w)
            {
                TS.Store(acc + q, TS.Zero);
            }

            for (; i + lanes <= n; i += lanes)
            {
                for (int q = 0; q < lanes; q += w)
                {
                    TS.Store(acc + q, TS.MulAdd(TS.Load(a + i + q), TS.Load(b + i + q), TS.Load(acc + q)));
                }
            }

            sum = LaneOrder.Sum(Vector256.Load(acc), Vector256.Load(acc + 8));
        }

        for (; i < n; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    /// <summary>dst[i] = src[i] * factor for i &lt; n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleCopy<TV, TS>(float* dst, float* src, int n, float factor)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        TV f = TS.Splat(factor);
        int i = 0;
        for (; i + w <= n; i += w)
        {
            TS.Store(dst + i, TS.Mul(TS.Load(src + i), f));
        }

        for (; i < n; i++)
        {
            dst[i] = src[i] * factor;
        }
    }

    /// <summary>dst[i] = src[i] * factor for i &lt; n, a zero result written as +0 (see <see cref="IOps{TV}.PlusZero"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleCopyPlusZero<TV, TS>(float* dst, float* src, int n, float factor)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        int w = TS.Width;
        TV f = TS.Splat(factor);
        int i = 0;
        for (; i + w <= n; i += w)
        {
            TS.Store(dst + i, TS.PlusZero(TS.Mul(TS.Load(src + i), f)));
        }

        for (; i < n; i++)
        {
            float x = src[i] * factor;
            dst[i] = x == 0 ? 0f : x;
        }
    }

    /// <summary>
    /// Copies <paramref name="rows"/> rows of <paramref name="n"/> floats (source stride
    /// <paramref name="srcStride"/>) into a tile of stride <paramref name="dstStride"/>, zero-filling
    /// columns [n, dstStride) and rows [rows, rowsPadded).
    /// </summary>
    public static void CopyRowsPadded(float* dst, int dstStride, float* src, long srcStride, int rows, int rowsPadded, int n)
    {
        for (int r = 0; r < rows; r++)
        {
            float* d = dst + ((long)r * dstStride);
            Buffer.MemoryCopy(src + (r * srcStride), d, (long)n * 4, (long)n * 4);
            for (int j = n; j < dstStride; j++)
            {
                d[j] = 0;
            }
        }

        for (int r = rows; r < rowsPadded; r++)
        {
            new Span<float>(dst + ((long)r * dstStride), dstStride).Clear();
        }
    }

    /// <summary>
    /// Transposes <paramref name="rows"/> rows of <paramref name="n"/> floats (source stride
    /// <paramref name="srcStride"/>) into <c>dst[k, r]</c> with row stride <paramref name="dstStride"/>,
    /// zero-filling columns [rows, dstStride).
    /// </summary>
    public static void Transpose(float* dst, int dstStride, float* src, long srcStride, int rows, int n)
    {
        for (int k = 0; k < n; k++)
        {
            float* d = dst + ((long)k * dstStride);
            float* s = src + k;
            for (int r = 0; r < rows; r++)
            {
                d[r] = s[r * srcStride];
            }

            for (int r = rows; r < dstStride; r++)
            {
                d[r] = 0;
            }
        }
    }

    /// <summary>
    /// exp(x) for the softmax, about 1 ulp (Cephes expf: x = n ln2 + r with |r| &lt;= ln2/2, a degree-6
    /// polynomial for e^r, 2^n through the exponent bits). Inputs below -87.3 (e.g. the -inf of a
    /// masked score) give exactly 0; inputs are assumed &lt;= 88 (softmax arguments are &lt;= ~0).
    /// The runtime's Vector512.Exp is several times slower on the machines measured.
    /// </summary>
    internal static class ExpApprox
    {
        private const float Log2E = 1.44269504088896341f;
        private const float Ln2Hi = 0.693359375f;
        private const float Ln2Lo = -2.12194440e-4f;
        private const float Lowest = -87.33654f;
        private const float P0 = 1.9875691500e-4f;
        private const float P1 = 1.3981999507e-3f;
        private const float P2 = 8.3334519073e-3f;
        private const float P3 = 4.1665795894e-2f;
        private const float P4 = 1.6666665459e-1f;
        private const float P5 = 5.0000001201e-1f;

        /// <summary>One element with the vector forms' arithmetic, operation for operation (the same bits).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Exp(float x)
        {
            bool underflow = x < Lowest;
            x = MathF.Max(x, Lowest);
            float n = MathF.Round(x * Log2E);
            float r = MathF.FusedMultiplyAdd(n, -Ln2Hi, x);
            r = MathF.FusedMultiplyAdd(n, -Ln2Lo, r);
            float p = MathF.FusedMultiplyAdd(P0, r, P1);
            p = MathF.FusedMultiplyAdd(p, r, P2);
            p = MathF.FusedMultiplyAdd(p, r, P3);
            p = MathF.FusedMultiplyAdd(p, r, P4);
            p = MathF.FusedMultiplyAdd(p, r, P5);
            p = MathF.FusedMultiplyAdd(p, r * r, r + 1f);
            float pow2 = BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
            return underflow ? 0f : p * pow2;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Exp(Vector512<float> x)
        {
            Vector512<float> underflow = Vector512.LessThan(x, Vector512.Create(Lowest));
            x = Vector512.Max(x, Vector512.Create(Lowest));
            Vector512<float> n = Vector512.Round(x * Vector512.Create(Log2E));
            Vector512<float> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), x);
            r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
            Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
            p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
            Vector512<float> pow2 = Vector512.ShiftLeft(Vector512.ConvertToInt32Native(n) + Vector512.Create(127), 23).AsSingle();
            return Vector512.ConditionalSelect(underflow, Vector512<float>.Zero, p * pow2);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Exp(Vector256<float> x)
        {
            Vector256<float> underflow = Vector256.LessThan(x, Vector256.Create(Lowest));
            x = Vector256.Max(x, Vector256.Create(Lowest));
            Vector256<float> n = Vector256.Round(x * Vector256.Create(Log2E));
            Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Hi), x);
            r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Lo), r);
            Vector256<float> p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
            p = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
            Vector256<float> pow2 = Vector256.ShiftLeft(Vector256.ConvertToInt32Native(n) + Vector256.Create(127), 23).AsSingle();
            return Vector256.ConditionalSelect(underflow, Vector256<float>.Zero, p * pow2);
        }
    }

    /// <summary>x rounded up to a multiple of m.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundUp(int x, int m) => (x + m - 1) / m * m;
}

/// <summary>
/// Per-worker scratch for the attention kernels: one 64-byte-aligned float block per pool worker,
/// grown on the calling thread before a loop starts (never inside a work item) and kept for later
/// calls. Pinned managed arrays, so nothing needs freeing explicitly.
/// </summary>
internal sealed unsafe class AttentionScratch
{
    private readonly float[]?[] arrays;
    private readonly nint[] starts;
    private long capacity;
    private float[]? shared;
    private nint sharedStart;
    private long sharedCapacity;

    public AttentionScratch(int workers)
    {
        arrays = new float[]?[workers];
        starts = new nint[workers];
    }

    /// <summary>Makes every worker's block hold at least <paramref name="floats"/> floats.</summary>
    public void Ensure(long floats)
    {
        if (floats <= capacity)
        {
            return;
        }

        for (int i = 0; i < arrays.Length; i++)
        {
            float[] array = GC.AllocateUninitializedArray<float>(checked((int)floats + 16), pinned: true);
            arrays[i] = array;
            nint p = (nint)Unsafe.AsPointer(ref array[0]);
            starts[i] = (p + 63) & ~(nint)63;
        }

        capacity = floats;
    }

    /// <summary>A block shared by all workers (each item writes its own part), grown to at least <paramref name="floats"/>; call before a loop.</summary>
    public float* Shared(long floats)
    {
        if (floats > sharedCapacity)
        {
            shared = null;
            shared = GC.AllocateUninitializedArray<float>(checked((int)floats + 16), pinned: true);
            nint p = (nint)Unsafe.AsPointer(ref shared[0]);
            sharedStart = (p + 63) & ~(nint)63;
            sharedCapacity = floats;
        }

        return (float*)sharedStart;
    }

    /// <summary>The block of worker <paramref name="worker"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* For(int worker) => (float*)starts[worker];
}
