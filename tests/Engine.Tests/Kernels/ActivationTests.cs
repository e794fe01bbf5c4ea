using System.Runtime.Intrinsics;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using static Engine.Tests.Kernels.ElementwiseAssert;

namespace Engine.Tests.Kernels;

/// <summary>GELU (tanh form), SwiGLU, Add and Scale on the CPU backend against double-precision references.</summary>
public sealed class ActivationTests : IDisposable
{
    private const double K = 0.79788456080286535587989211986876; // sqrt(2/pi)
    private const double A = 0.044715;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    // ---- double-precision references, written from the definitions ----

    private static double GeluRef(double x) => 0.5 * x * (1 + Math.Tanh(K * (x + A * x * x * x)));

    private static double GeluGradRef(double x)
    {
        double t = Math.Tanh(K * (x + A * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * A * x * x);
    }

    private static double Sigmoid(double g) => 1 / (1 + Math.Exp(-g));

    private static double[] SwiGluRef(float[] gateUp, int n, int f)
    {
        var y = new double[n * f];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < f; j++)
            {
                double g = gateUp[i * 2 * f + j], u = gateUp[i * 2 * f + f + j];
                y[i * f + j] = g * Sigmoid(g) * u;
            }
        }

        return y;
    }

    private static double[] SwiGluGradRef(float[] dy, float[] gateUp, int n, int f)
    {
        var d = new double[n * 2 * f];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < f; j++)
            {
                double g = gateUp[i * 2 * f + j], u = gateUp[i * 2 * f + f + j], s = Sigmoid(g);
                d[i * 2 * f + j] = dy[i * f + j] * u * (s + g * s * (1 - s));
                d[i * 2 * f + f + j] = dy[i * f + j] * g * s;
            }
        }

        return d;
    }

    // ---- kernel runners ----

    private static float[] Gelu(CpuAccelerator acc, float[] x)
    {
        using DeviceBuffer xb = acc.Put(x), yb = acc.Allocate(x.Length);
        acc.GeluForward(yb.All, xb.All, x.Length);
        return acc.Get(yb);
    }

    private static float[] GeluBackward(CpuAccelerator acc, float[] dy, float[] x)
    {
        using DeviceBuffer xb = acc.Put(x), dyb = acc.Put(dy), dxb = acc.Allocate(x.Length);
        acc.GeluBackward(dxb.All, dyb.All, xb.All, x.Length);
        return acc.Get(dxb);
    }

    private static float[] SwiGlu(CpuAccelerator acc, float[] gateUp, int n, int f)
    {
        using DeviceBuffer gb = acc.Put(gateUp), yb = acc.Allocate((long)n * f);
        acc.SwiGluForward(yb.All, gb.All, n, f);
        return acc.Get(yb);
    }

    private static float[] SwiGluBackward(CpuAccelerator acc, float[] dy, float[] gateUp, int n, int f)
    {
        using DeviceBuffer gb = acc.Put(gateUp), dyb = acc.Put(dy), db = acc.Allocate(2L * n * f);
        acc.SwiGluBackward(db.All, dyb.All, gb.All, n, f);
        return acc.Get(db);
    }

    private static double[] Map(float[] x, Func<double, double> f)
    {
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = f(x[i]);
        }

        return y;
    }

    // ---- the vectorised exp under GELU and SwiGLU ----

    [Fact]
    public void VectorExp_IsAccurate_AndSaturatesOutsideItsRange()
    {
        double worstF = 0, worstD = 0;
        for (float a = -87f; a <= 88.37f; a += 0.00731f)
        {
            float e512 = VectorExp.Exp(Vector512.Create(a))[0], e256 = VectorExp.Exp(Vector256.Create(a))[0];
            Assert.Equal(e512, e256);
            Assert.Equal(BitConverter.SingleToInt32Bits(e512), BitConverter.SingleToInt32Bits(VectorExp.Exp(a))); // the scalar form: the same bits
            worstF = Math.Max(worstF, Math.Abs(e512 - Math.Exp(a)) / Math.Exp(a));
        }

        for (double a = -708; a <= 709; a += 0.0317)
        {
            double e512 = VectorExp.Exp(Vector512.Create(a))[0], e256 = VectorExp.Exp(Vector256.Create(a))[0];
            Assert.Equal(e512, e256);
            Assert.Equal(BitConverter.DoubleToInt64Bits(e512), BitConverter.DoubleToInt64Bits(VectorExp.Exp(a)));
            worstD = Math.Max(worstD, Math.Abs(e512 - Math.Exp(a)) / Math.Exp(a));
        }

        Assert.True(worstF < 1.5e-7, $"float exp relative error {worstF:E2}");
        Assert.True(worstD < 2e-14, $"double exp relative error {worstD:E2}");

        foreach (float a in (float[])[float.NegativeInfinity, -1e30f, -100f, -87.5f])
        {
            Assert.Equal(0f, VectorExp.Exp(Vector512.Create(a))[0]);
            Assert.Equal(0f, VectorExp.Exp(Vector256.Create(a))[0]);
            Assert.Equal(0f, VectorExp.Exp(a));
        }

        foreach (float a in (float[])[88.5f, 100f, 1e30f, float.PositiveInfinity])
        {
            Assert.Equal(float.PositiveInfinity, VectorExp.Exp(Vector512.Create(a))[0]);
            Assert.Equal(float.PositiveInfinity, VectorExp.Exp(Vector256.Create(a))[0]);
            Assert.Equal(float.PositiveInfinity, VectorExp.Exp(a));
        }

        Assert.Equal(0.0, VectorExp.Exp(Vector512.Create(-1000.0))[0]);
        Assert.Equal(double.PositiveInfinity, VectorExp.Exp(Vector256.Create(1000.0))[0]);
        Assert.True(float.IsNaN(VectorExp.Exp(Vector512.Create(float.NaN))[0]));
        Assert.True(double.IsNaN(VectorExp.Exp(Vector256.Create(double.NaN))[0]));
    }

    // ---- GELU ----

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(100_003)] // several chunks: runs on the pool
    public void Gelu_Forward_MatchesDoubleReference(int n)
    {
        float[] x = TestData.Uniform(11, n, 6f);
        float[] y = Gelu(cpu, x);
        double[] expected = Map(x, GeluRef);
        Compare.Close(expected, y, 2e-7, "gelu");

        // Element by element where the double tanh reference is itself accurate (|x| <= 5).
        var moderate = new List<int>();
        for (int i = 0; i < n; i++)
        {
            if (Math.Abs(x[i]) <= 5)
            {
                moderate.Add(i);
            }
        }

        ElementsClose(moderate.Select(i => expected[i]).ToArray(), moderate.Select(i => y[i]).ToArray(), 1.5e-7, 1e-30, "gelu elements");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(1000)]
    public void Gelu_Backward_MatchesReferenceAndFiniteDifferences(int n)
    {
        float[] x = TestData.Uniform(12, n, 4f);
        float[] dy = TestData.Uniform(13, n);
        float[] dx = GeluBackward(cpu, dy, x);

        var expected = new double[n];
        for (int i = 0; i < n; i++)
        {
            expected[i] = dy[i] * GeluGradRef(x[i]);
        }

        Compare.Close(expected, dx, 2e-7, "gelu backward");
        FiniteDifference.Check(x, dx, xs => Dot(dy, Map(xs, GeluRef)), "gelu backward", h: 1e-3);
    }

    [Fact]
    public void Gelu_Backward_MayWriteOverDy()
    {
        float[] x = TestData.Uniform(14, 101, 3f);
        float[] dy = TestData.Uniform(15, 101);
        float[] separate = GeluBackward(cpu, dy, x);
        using DeviceBuffer xb = cpu.Put(x), gb = cpu.Put(dy);
        cpu.GeluBackward(gb.All, gb.All, xb.All, x.Length);
        BitIdentical(separate, cpu.Get(gb), "gelu backward in place");
    }

    [Fact]
    public void Gelu_ExtremeInputs_StayFiniteAndSaturate()
    {
        float[] x = [-1e30f, -1e4f, -100f, -30f, -10f, 0f, 10f, 30f, 100f, 1e4f, 1e30f];
        float[] y = Gelu(cpu, x);
        float[] d = GeluBackward(cpu, Enumerable.Repeat(1f, x.Length).ToArray(), x);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.True(float.IsFinite(y[i]) && float.IsFinite(d[i]), $"gelu({x[i]}) = {y[i]}, gelu' = {d[i]}");
            if (x[i] <= -10f)
            {
                Assert.True(Math.Abs(y[i]) < 1e-20f && Math.Abs(d[i]) < 1e-20f, $"gelu({x[i]}) = {y[i]}, gelu' = {d[i]}");
            }
            else if (x[i] >= 10f)
            {
                Assert.Equal(x[i], y[i]);
                Assert.Equal(1f, d[i]);
            }
        }

        Assert.Equal(0f, y[5]);
        Assert.Equal(0.5f, d[5]);
    }

    [Fact]
    public void NaN_Propagates_AndStaysInItsElement()
    {
        const int n = 37; // element 3 is in a vector, element 35 in the scalar tail
        float[] x = TestData.Uniform(16, 2 * n, 3f);
        x[3] = float.NaN;
        x[35] = float.NaN;
        float[] dy = TestData.Uniform(17, n);
        float[] ones = Enumerable.Repeat(1f, n).ToArray();
        float[][] results =
        [
            Gelu(cpu, x[..n]), GeluBackward(cpu, dy, x[..n]),
            SwiGlu(cpu, x, 1, n), SwiGluBackward(cpu, ones, x, 1, n)[..n], SwiGluBackward(cpu, ones, x, 1, n)[n..],
        ];
        foreach (float[] r in results)
        {
            for (int i = 0; i < n; i++)
            {
                Assert.True(float.IsNaN(r[i]) == (i == 3 || i == 35), $"element {i}: {r[i]}");
            }
        }
    }

    // ---- SwiGLU ----

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(3, 16)]
    [InlineData(1000, 37)] // several row chunks: runs on the pool
    public void SwiGlu_Forward_MatchesDoubleReference(int n, int f)
    {
        float[] gateUp = TestData.Uniform(21, 2L * n * f, 5f);
        float[] y = SwiGlu(cpu, gateUp, n, f);
        ElementsClose(SwiGluRef(gateUp, n, f), y, 1e-6, 1e-30, "swiglu");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(3, 16)]
    [InlineData(1000, 37)]
    public void SwiGlu_Backward_MatchesReferenceAndFiniteDifferences(int n, int f)
    {
        float[] gateUp = TestData.Uniform(22, 2L * n * f, 5f);
        float[] dy = TestData.Uniform(23, (long)n * f);
        float[] d = SwiGluBackward(cpu, dy, gateUp, n, f);
        Compare.Close(SwiGluGradRef(dy, gateUp, n, f), d, 6e-7, "swiglu backward");
        FiniteDifference.Check(gateUp, d, gu => Dot(dy, SwiGluRef(gu, n, f)), "swiglu backward", h: 1e-3);
    }

    [Fact]
    public void SwiGlu_ExtremeGates_StayFinite()
    {
        float[] gates = [-1e30f, -1e4f, -100f, -20f, 0f, 20f, 100f, 1e4f];
        int f = gates.Length;
        float[] gateUp = [.. gates, .. Enumerable.Repeat(2f, f)];
        float[] y = SwiGlu(cpu, gateUp, 1, f);
        float[] d = SwiGluBackward(cpu, Enumerable.Repeat(1f, f).ToArray(), gateUp, 1, f);
        double[] expectedY = SwiGluRef(gateUp, 1, f);
        for (int j = 0; j < f; j++)
        {
            Assert.True(float.IsFinite(y[j]) && float.IsFinite(d[j]) && float.IsFinite(d[f + j]), $"swiglu at gate {gates[j]}");
            Assert.True(Math.Abs(y[j] - expectedY[j]) <= 1e-6 * Math.Abs(expectedY[j]) + 1e-30, $"swiglu({gates[j]}) = {y[j]}");
        }

        Assert.Equal(1f, d[4]);       // d gate at g = 0: up * sigmoid(0) = 2 * 0.5
        Assert.Equal(0f, d[f + 4]);   // d up at g = 0: silu(0)
        Assert.Equal(2f, d[7]);       // d gate at g = 1e4: up * 1
        Assert.Equal(1e4f, d[f + 7]); // d up at g = 1e4: silu(1e4)
        for (int j = 0; j < 3; j++)
        {
            Assert.True(Math.Abs(d[j]) < 1e-30f && Math.Abs(d[f + j]) < 1e-30f, $"swiglu' at gate {gates[j]}: {d[j]}, {d[f + j]}");
        }
    }

    // ---- Add, Scale ----

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(100_003)]
    public void Add_IsExactOnOffsetViews(int n)
    {
        float[] a = TestData.Uniform(31, n), b = TestData.Uniform(32, n);
        using DeviceBuffer buf = cpu.Allocate(3L * n + 10);
        Tensor av = buf.Slice(1, n), bv = buf.Slice(n + 3, n), yv = buf.Slice(2L * n + 7, n);
        cpu.Upload(av, a);
        cpu.Upload(bv, b);
        cpu.Fill(buf.Slice(2L * n + 6, 1), 7f);
        cpu.Fill(buf.Slice(3L * n + 7, 3), 7f);
        cpu.Add(yv, av, bv, n);

        // A float sum is the correctly rounded exact sum, and the double sum of two floats is exact here.
        var expected = new float[n];
        for (int i = 0; i < n; i++)
        {
            expected[i] = (float)((double)a[i] + b[i]);
        }

        BitIdentical(expected, cpu.ToArray(yv), "add");
        Assert.Equal([7f], cpu.ToArray(buf.Slice(2L * n + 6, 1)));
        Assert.Equal([7f, 7f, 7f], cpu.ToArray(buf.Slice(3L * n + 7, 3)));
    }

    [Fact]
    public void Add_MayWriteOverEitherInput()
    {
        const int n = 77;
        float[] a = TestData.Uniform(33, n), b = TestData.Uniform(34, n);
        var expected = new float[n];
        for (int i = 0; i < n; i++)
        {
            expected[i] = a[i] + b[i];
        }

        using DeviceBuffer ab = cpu.Put(a), bb = cpu.Put(b);
        cpu.Add(ab.All, ab.All, bb.All, n);
        BitIdentical(expected, cpu.Get(ab), "add into a");

        using DeviceBuffer ab2 = cpu.Put(a);
        cpu.Add(bb.All, ab2.All, bb.All, n);
        BitIdentical(expected, cpu.Get(bb), "add into b");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(100_003)]
    public void Scale_IsExact(int n)
    {
        float[] x = TestData.Uniform(35, n, 3f);
        const float s = -0.3712f;
        using DeviceBuffer xb = cpu.Put(x);
        cpu.Scale(xb.All, s, n);
        var expected = new float[n];
        for (int i = 0; i < n; i++)
        {
            expected[i] = (float)((double)x[i] * s); // the double product of two floats is exact
        }

        BitIdentical(expected, cpu.Get(xb), "scale");
    }

    [Fact]
    public void Ops_DoNotAllocate()
    {
        const int n = 100_003, rows = 1000, f = 37;
        using CpuAccelerator one = TestDevices.Cpu(1);
        using DeviceBuffer x = one.Put(TestData.Uniform(51, n)), y = one.Allocate(n), gu = one.Put(TestData.Uniform(52, 2 * rows * f));
        using DeviceBuffer s = one.Allocate(rows * f), ds = one.Allocate(2 * rows * f);
        void Run()
        {
            one.GeluForward(y.All, x.All, n);
            one.GeluBackward(y.All, y.All, x.All, n);
            one.SwiGluForward(s.All, gu.All, rows, f);
            one.SwiGluBackward(ds.All, s.All, gu.All, rows, f);
            one.Add(y.All, y.All, x.All, n);
            one.Scale(y.All, 0.5f, n);
        }

        DoesNotAllocate(Run);
    }

    // ---- determinism ----

    [Fact]
    public void OneAndTwoThreads_GiveIdenticalBits()
    {
        const int n = 100_003, rows = 1000, f = 37;
        float[] x = TestData.Uniform(41, n, 5f), dy = TestData.Uniform(42, n);
        float[] gateUp = TestData.Uniform(43, 2L * rows * f, 5f), dyf = TestData.Uniform(44, (long)rows * f);
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        BitIdentical(Gelu(one, x), Gelu(two, x), "gelu");
        BitIdentical(GeluBackward(one, dy, x), GeluBackward(two, dy, x), "gelu backward");
        BitIdentical(SwiGlu(one, gateUp, rows, f), SwiGlu(two, gateUp, rows, f), "swiglu");
        BitIdentical(SwiGluBackward(one, dyf, gateUp, rows, f), SwiGluBackward(two, dyf, gateUp, rows, f), "swiglu backward");
    }
}
