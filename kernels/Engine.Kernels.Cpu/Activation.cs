using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Element-wise activations: GELU (tanh form), SwiGLU, residual add, scale. Each kernel is a struct
// over a range of elements (or rows for SwiGLU), run in fixed chunks; every output element is
// written by exactly one item, so results do not depend on the thread count.
internal sealed unsafe partial class CpuAccelerator
{
    protected override void GeluForwardCore(Tensor y, Tensor x, long n) =>
        RunChunks(n, ExpElementChunk, new GeluForwardKernel { Y = F(y), X = F(x) });

    protected override void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n) =>
        RunChunks(n, ExpElementChunk, new GeluBackwardKernel { Dx = F(dx), Dy = F(dy), X = F(x) });

    protected override void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f) =>
        RunChunks(n, RowsPerItem(2L * f), new SwiGluForwardKernel { Y = F(y), GateUp = F(gateUp), F = f });

    protected override void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f) =>
        RunChunks(n, RowsPerItem(2L * f), new SwiGluBackwardKernel { DGateUp = F(dGateUp), Dy = F(dy), GateUp = F(gateUp), F = f });

    protected override void AddCore(Tensor y, Tensor a, Tensor b, long n) =>
        RunChunks(n, ElementChunk, new AddKernel { Y = F(y), A = F(a), B = F(b) });

    protected override void ScaleCore(Tensor x, float s, long n) =>
        RunChunks(n, ElementChunk, new ScaleKernel { X = F(x), S = s });
}

/// <summary>
/// GELU, tanh form, written as <c>gelu(x) = x * sigmoid(2u)</c> with <c>u = sqrt(2/pi) (x + 0.044715 x^3)</c>.
/// This equals <c>0.5 x (1 + tanh u)</c> exactly but avoids the cancellation in <c>1 + tanh u</c> for
/// negative u. It is evaluated in double (with <see cref="VectorExp"/>): in float, the rounding of
/// the exp argument 2u alone costs |2u| ulps (up to 1e-6 relative at x = -5), while the double
/// path rounds once, to float, at the end.
/// </summary>
internal static class GeluMath
{
    private const double K = 0.79788456080286535587989211986876; // sqrt(2/pi)
    private const double KA = K * 0.044715;
    private const double ThreeKA = 3 * KA;

    /// <summary>
    /// The derivative clamps x to [-XCap, XCap]: beyond, gelu' rounds to exactly 0 or 1 in float,
    /// and inside, exp(-2u) &lt; e^603 stays finite in double (so e * s is never inf * 0).
    /// </summary>
    private const double XCap = 20;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Forward(double x)
    {
        double u = x * Math.FusedMultiplyAdd(x * x, KA, K);
        return x / (1 + VectorExp.Exp(-2 * u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Forward(Vector256<double> x)
    {
        Vector256<double> u = x * Vector256.FusedMultiplyAdd(x * x, Vector256.Create(KA), Vector256.Create(K));
        return x / (Vector256<double>.One + VectorExp.Exp(u * -2.0));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Forward(Vector512<double> x)
    {
        Vector512<double> u = x * Vector512.FusedMultiplyAdd(x * x, Vector512.Create(KA), Vector512.Create(K));
        return x / (Vector512<double>.One + VectorExp.Exp(u * -2.0));
    }

    /// <summary>
    /// gelu'(x) = s + 2 x s (1 - s) u', with s = sigmoid(2u), 1 - s = e s (e = exp(-2u), no
    /// cancellation) and u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Derivative(double x)
    {
        x = Math.Max(Math.Min(x, XCap), -XCap);
        double x2 = x * x;
        double u = x * Math.FusedMultiplyAdd(x2, KA, K);
        double e = VectorExp.Exp(-2 * u);
        double s = 1 / (1 + e);
        double du = Math.FusedMultiplyAdd(x2, ThreeKA, K);
        return s + 2 * x * s * (e * s) * du;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Derivative(Vector256<double> x)
    {
        x = Vector256.Max(Vector256.Min(x, Vector256.Create(XCap)), Vector256.Create(-XCap));
        Vector256<double> x2 = x * x;
        Vector256<double> u = x * Vector256.FusedMultiplyAdd(x2, Vector256.Create(KA), Vector256.Create(K));
        Vector256<double> e = VectorExp.Exp(u * -2.0);
        Vector256<double> s = Vector256<double>.One / (Vector256<double>.One + e);
        Vector256<double> du = Vector256.FusedMultiplyAdd(x2, Vector256.Create(ThreeKA), Vector256.Create(K));
        return s + 2.0 * x * s * (e * s) * du;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Derivative(Vector512<double> x)
    {
        x = Vector512.Max(Vector512.Min(x, Vector512.Create(XCap)), Vector512.Create(-XCap));
        Vector512<double> x2 = x * x;
        Vector512<double> u = x * Vector512.FusedMultiplyAdd(x2, Vector512.Create(KA), Vector512.Create(K));
        Vector512<double> e = VectorExp.Exp(u * -2.0);
        Vector512<double> s = Vector512<double>.One / (Vector512<double>.One + e);
        Vector512<double> du = Vector512.FusedMultiplyAdd(x2, Vector512.Create(ThreeKA), Vector512.Create(K));
        return s + 2.0 * x * s * (e * s) * du;
    }
}

/// <summary>GELU forward over elements: y [n] = gelu(x [n]), computed in double, rounded once.</summary>
internal unsafe struct GeluForwardKernel : IChunkKernel
{
    public float* Y; // [n]
    public float* X; // [n]

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* y = Y + start, x = X + start;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= count - 16; i += 16)
            {
                (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(Vector512.Load(x + i));
                Vector512.Narrow(GeluMath.Forward(lo), GeluMath.Forward(hi)).Store(y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= count - 8; i += 8)
            {
                (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(Vector256.Load(x + i));
                Vector256.Narrow(GeluMath.Forward(lo), GeluMath.Forward(hi)).Store(y + i);
            }
        }

        for (; i < count; i++)
        {
            y[i] = (float)GeluMath.Forward(x[i]);
        }
    }
}

/// <summary>GELU backward over elements: dx [n] = dy [n] * gelu'(x [n]) (double, rounded once); dx may alias dy.</summary>
internal unsafe struct GeluBackwardKernel : IChunkKernel
{
    public float* Dx; // [n]
    public float* Dy; // [n]
    public float* X;  // [n]

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* dx = Dx + start, dy = Dy + start, x = X + start;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= count - 16; i += 16)
            {
                (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(Vector512.Load(x + i));
                (Vector512<double> glo, Vector512<double> ghi) = Vector512.Widen(Vector512.Load(dy + i));
                Vector512.Narrow(glo * GeluMath.Derivative(lo), ghi * GeluMath.Derivative(hi)).Store(dx + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= count - 8; i += 8)
            {
                (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(Vector256.Load(x + i));
                (Vector256<double> glo, Vector256<double> ghi) = Vector256.Widen(Vector256.Load(dy + i));
                Vector256.Narrow(glo * GeluMath.Derivative(lo), ghi * GeluMath.Derivative(hi)).Store(dx + i);
            }
        }

        for (; i < count; i++)
        {
            dx[i] = (float)(dy[i] * GeluMath.Derivative(x[i]));
        }
    }
}

/// <summary>
/// SwiGLU forward over rows: y [N, F] = silu(gate) * up with silu(g) = g / (1 + exp(-g)), where
/// gateUp [N, 2F] = [gate F | up F]. exp overflowing to infinity gives the exact limit -0.
/// </summary>
internal unsafe struct SwiGluForwardKernel : IChunkKernel
{
    public float* Y;      // [N, F]
    public float* GateUp; // [N, 2F]
    public int F;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int f = F;
        for (long r = start; r < start + count; r++)
        {
            float* g = GateUp + r * 2 * f, u = g + f, y = Y + r * f;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; j <= f - 16; j += 16)
                {
                    Vector512<float> gv = Vector512.Load(g + j);
                    Vector512<float> s = Vector512<float>.One / (Vector512<float>.One + VectorExp.Exp(-gv));
                    (gv * s * Vector512.Load(u + j)).Store(y + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                for (; j <= f - 8; j += 8)
                {
                    Vector256<float> gv = Vector256.Load(g + j);
                    Vector256<float> s = Vector256<float>.One / (Vector256<float>.One + VectorExp.Exp(-gv));
                    (gv * s * Vector256.Load(u + j)).Store(y + j);
                }
            }

            for (; j < f; j++)
            {
                float s = 1f / (1f + VectorExp.Exp(-g[j]));
                y[j] = g[j] * s * u[j];
            }
        }
    }
}

/// <summary>
/// SwiGLU backward over rows, written into dGateUp [N, 2F] from dy [N, F] and gateUp [N, 2F]:
/// d gate = dy * up * s (1 + g (1 - s)), d up = dy * g * s, with s = sigmoid(g) = 1 / (1 + e),
/// e = exp(-g) and 1 - s = e s (no cancellation). g is first raised to at least
/// <see cref="GateFloor"/>, where both terms are below 1e-32 and e stays finite.
/// </summary>
internal unsafe struct SwiGluBackwardKernel : IChunkKernel
{
    /// <summary>Lower clamp of the gate in the backward (e^80 &lt; float.MaxValue).</summary>
    public const float GateFloor = -80f;

    public float* DGateUp; // [N, 2F]
    public float* Dy;      // [N, F]
    public float* GateUp;  // [N, 2F]
    public int F;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int f = F;
        for (long r = start; r < start + count; r++)
        {
            float* g = GateUp + r * 2 * f, u = g + f, dy = Dy + r * f;
            float* dg = DGateUp + r * 2 * f, du = dg + f;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> floor = Vector512.Create(GateFloor);
                for (; j <= f - 16; j += 16)
                {
                    Vector512<float> gv = Vector512.Max(Vector512.Load(g + j), floor);
                    Vector512<float> uv = Vector512.Load(u + j), dyv = Vector512.Load(dy + j);
                    Vector512<float> e = VectorExp.Exp(-gv);
                    Vector512<float> s = Vector512<float>.One / (Vector512<float>.One + e);
                    Vector512<float> ds = s * Vector512.FusedMultiplyAdd(gv, e * s, Vector512<float>.One);
                    (dyv * uv * ds).Store(dg + j);
                    (dyv * (gv * s)).Store(du + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> floor = Vector256.Create(GateFloor);
                for (; j <= f - 8; j += 8)
                {
                    Vector256<float> gv = Vector256.Max(Vector256.Load(g + j), floor);
                    Vector256<float> uv = Vector256.Load(u + j), dyv = Vector256.Load(dy + j);
                    Vector256<float> e = VectorExp.Exp(-gv);
                    Vector256<float> s = Vector256<float>.One / (Vector256<float>.One + e);
                    Vector256<float> ds = s * Vector256.FusedMultiplyAdd(gv, e * s, Vector256<float>.One);
                    (dyv * uv * ds).Store(dg + j);
                    (dyv * (gv * s)).Store(du + j);
                }
            }

            for (; j < f; j++)
            {
                float gj = MathF.Max(g[j], GateFloor), e = VectorExp.Exp(-gj);
                float s = 1f / (1f + e);
                float ds = s * MathF.FusedMultiplyAdd(gj, e * s, 1f);
                float upj = u[j], dyj = dy[j];
                dg[j] = dyj * upj * ds;
                du[j] = dyj * (gj * s);
            }
        }
    }
}

/// <summary>y [n] = a [n] + b [n]; y may alias a or b (each vector is loaded before it is stored).</summary>
internal unsafe struct AddKernel : IChunkKernel
{
    public float* Y;
    public float* A;
    public float* B;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* y = Y + start, a = A + start, b = B + start;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= count - 16; i += 16)
            {
                (Vector512.Load(a + i) + Vector512.Load(b + i)).Store(y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= count - 8; i += 8)
            {
                (Vector256.Load(a + i) + Vector256.Load(b + i)).Store(y + i);
            }
        }

        for (; i < count; i++)
        {
            y[i] = a[i] + b[i];
        }
    }
}

/// <summary>x [n] *= s.</summary>
internal unsafe struct ScaleKernel : IChunkKernel
{
    public float* X;
    public float S;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* x = X + start;
        float s = S;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> sv = Vector512.Create(s);
            for (; i <= count - 16; i += 16)
            {
                (Vector512.Load(x + i) * sv).Store(x + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> sv = Vector256.Create(s);
            for (; i <= count - 8; i += 8)
            {
                (Vector256.Load(x + i) * sv).Store(x + i);
            }
        }

        for (; i < count; i++)
        {
            x[i] = x[i] * s;
        }
    }
}

/// <summary>
/// Vectorised exp for the activations, much faster than <see cref="Vector512.Exp(Vector512{float})"/>
/// (about 0.3 vs 3.6 ns per element here). Cody-Waite reduction a = n ln2 + r (|r| &lt;= ln2/2),
/// a Taylor polynomial for exp(r), and 2^n built in the exponent bits; n is rounded with the
/// 1.5 * 2^mantissa shifter, so no float-to-int conversion is needed (AVX2 suffices).
/// Float: under 1e-7 relative (about 1 ulp) for a in [-87, 88.37]; below, 0 (results under 1.6e-38 flush to zero);
/// above, +inf (results over 2.4e38). Double: about 1e-14 relative for a in [-708, 709]; 0 below,
/// +inf above. NaN gives NaN.
/// </summary>
internal static class VectorExp
{
    private const float ShiftF = 12582912f;                // 1.5 * 2^23
    private const float Log2EF = 1.44269504088896341f;
    private const float Ln2HiF = 0.693145751953125f;       // few bits: n * Ln2HiF is exact
    private const float Ln2LoF = 1.428606765330187045e-06f;
    private const float MaxF = 88.37f;                     // n <= 127
    private const float MinF = -87f;                       // n >= -126

    private const double ShiftD = 6755399441055744.0;      // 1.5 * 2^52
    private const double Log2ED = 1.4426950408889634;
    private const double Ln2HiD = 6.93147180369123816490e-01;
    private const double Ln2LoD = 1.90821492927058770002e-10;
    private const double MaxD = 709.0;                     // n <= 1023
    private const double MinD = -708.0;                    // n >= -1022

    /// <summary>
    /// One element with the vector forms' arithmetic, operation for operation (fused where they fuse):
    /// a tail element, or every element without AVX2, gets the bits it would get in a vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float a)
    {
        float t = MathF.FusedMultiplyAdd(a, Log2EF, ShiftF);
        float n = t - ShiftF;
        float r = MathF.FusedMultiplyAdd(n, -Ln2HiF, a);
        r = MathF.FusedMultiplyAdd(n, -Ln2LoF, r);
        float p = 1f / 5040;
        p = MathF.FusedMultiplyAdd(p, r, 1f / 720);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 120);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 24);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 6);
        p = MathF.FusedMultiplyAdd(p, r, 0.5f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        float y = p * BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(t) << 23) + (127 << 23));
        y = a > MaxF ? float.PositiveInfinity : y;
        return a < MinF ? 0f : y;
    }

    /// <inheritdoc cref="Exp(float)"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Exp(double a)
    {
        double t = Math.FusedMultiplyAdd(a, Log2ED, ShiftD);
        double n = t - ShiftD;
        double r = Math.FusedMultiplyAdd(n, -Ln2HiD, a);
        r = Math.FusedMultiplyAdd(n, -Ln2LoD, r);
        double p = 1.0 / 39916800;
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 3628800);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 362880);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 40320);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 5040);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 720);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 120);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 24);
        p = Math.FusedMultiplyAdd(p, r, 1.0 / 6);
        p = Math.FusedMultiplyAdd(p, r, 0.5);
        p = Math.FusedMultiplyAdd(p, r, 1.0);
        p = Math.FusedMultiplyAdd(p, r, 1.0);
        double y = p * BitConverter.Int64BitsToDouble((BitConverter.DoubleToInt64Bits(t) << 52) + (1023L << 52));
        y = a > MaxD ? double.PositiveInfinity : y;
        return a < MinD ? 0.0 : y;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> a)
    {
        Vector512<float> t = Vector512.FusedMultiplyAdd(a, Vector512.Create(Log2EF), Vector512.Create(ShiftF));
        Vector512<float> n = t - Vector512.Create(ShiftF);
        Vector512<float> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2HiF), a);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2LoF), r);
        Vector512<float> p = Vector512.Create(1f / 5040);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 720));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        Vector512<float> y = p * ((t.AsInt32() << 23) + Vector512.Create(127 << 23)).AsSingle();
        y = Vector512.ConditionalSelect(Vector512.GreaterThan(a, Vector512.Create(MaxF)), Vector512.Create(float.PositiveInfinity), y);
        return Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(MinF)), Vector512<float>.Zero, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> a)
    {
        Vector256<float> t = Vector256.FusedMultiplyAdd(a, Vector256.Create(Log2EF), Vector256.Create(ShiftF));
        Vector256<float> n = t - Vector256.Create(ShiftF);
        Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2HiF), a);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2LoF), r);
        Vector256<float> p = Vector256.Create(1f / 5040);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 720));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 120));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 24));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        Vector256<float> y = p * ((t.AsInt32() << 23) + Vector256.Create(127 << 23)).AsSingle();
        y = Vector256.ConditionalSelect(Vector256.GreaterThan(a, Vector256.Create(MaxF)), Vector256.Create(float.PositiveInfinity), y);
        return Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256.Create(MinF)), Vector256<float>.Zero, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Exp(Vector512<double> a)
    {
        Vector512<double> t = Vector512.FusedMultiplyAdd(a, Vector512.Create(Log2ED), Vector512.Create(ShiftD));
        Vector512<double> n = t - Vector512.Create(ShiftD);
        Vector512<double> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2HiD), a);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2LoD), r);
        Vector512<double> p = Vector512.Create(1.0 / 39916800);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 3628800));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 362880));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 40320));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 5040));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 720));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 120));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 24));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<double>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<double>.One);
        Vector512<double> y = p * ((t.AsInt64() << 52) + Vector512.Create(1023L << 52)).AsDouble();
        y = Vector512.ConditionalSelect(Vector512.GreaterThan(a, Vector512.Create(MaxD)), Vector512.Create(double.PositiveInfinity), y);
        return Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(MinD)), Vector512<double>.Zero, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Exp(Vector256<double> a)
    {
        Vector256<double> t = Vector256.FusedMultiplyAdd(a, Vector256.Create(Log2ED), Vector256.Create(ShiftD));
        Vector256<double> n = t - Vector256.Create(ShiftD);
        Vector256<double> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2HiD), a);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2LoD), r);
        Vector256<double> p = Vector256.Create(1.0 / 39916800);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 3628800));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 362880));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 40320));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 5040));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 720));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 120));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 24));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0 / 6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<double>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<double>.One);
        Vector256<double> y = p * ((t.AsInt64() << 52) + Vector256.Create(1023L << 52)).AsDouble();
        y = Vector256.ConditionalSelect(Vector256.GreaterThan(a, Vector256.Create(MaxD)), Vector256.Create(double.PositiveInfinity), y);
        return Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256.Create(MinD)), Vector256<double>.Zero, y);
    }
}
