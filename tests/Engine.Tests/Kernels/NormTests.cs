using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using static Engine.Tests.Kernels.ElementwiseAssert;

namespace Engine.Tests.Kernels;

/// <summary>LayerNorm and RMSNorm on the CPU backend against double-precision references and finite differences.</summary>
public sealed class NormTests : IDisposable
{
    private const float Eps = 1e-5f;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    // ---- double-precision references (PyTorch semantics: biased variance, eps inside the root) ----

    private static (double[] Out, double[] Mean, double[] Rstd) LayerNormRef(float[] x, float[] w, float[]? b, int n, int c)
    {
        var o = new double[n * c];
        var mean = new double[n];
        var rstd = new double[n];
        for (int i = 0; i < n; i++)
        {
            double m = 0;
            for (int j = 0; j < c; j++)
            {
                m += x[i * c + j];
            }

            m /= c;
            double v = 0;
            for (int j = 0; j < c; j++)
            {
                double d = x[i * c + j] - m;
                v += d * d;
            }

            v /= c;
            double r = 1 / Math.Sqrt(v + Eps);
            mean[i] = m;
            rstd[i] = r;
            for (int j = 0; j < c; j++)
            {
                o[i * c + j] = (x[i * c + j] - m) * r * w[j] + (b is null ? 0 : b[j]);
            }
        }

        return (o, mean, rstd);
    }

    /// <summary>dx, dweight, dbias of L = sum(dout * LayerNorm(x)), from the textbook formula.</summary>
    private static (double[] Dx, double[] Dw, double[] Db) LayerNormGradRef(float[] dout, float[] x, float[] w, int n, int c)
    {
        (_, double[] mean, double[] rstd) = LayerNormRef(x, w, null, n, c);
        var dx = new double[n * c];
        var dw = new double[c];
        var db = new double[c];
        for (int i = 0; i < n; i++)
        {
            double sumDn = 0, sumDnXh = 0;
            for (int j = 0; j < c; j++)
            {
                double xh = (x[i * c + j] - mean[i]) * rstd[i];
                double dn = (double)dout[i * c + j] * w[j];
                sumDn += dn;
                sumDnXh += dn * xh;
                dw[j] += dout[i * c + j] * xh;
                db[j] += dout[i * c + j];
            }

            for (int j = 0; j < c; j++)
            {
                double xh = (x[i * c + j] - mean[i]) * rstd[i];
                double dn = (double)dout[i * c + j] * w[j];
                dx[i * c + j] = rstd[i] * (dn - sumDn / c - xh * sumDnXh / c);
            }
        }

        return (dx, dw, db);
    }

    private static (double[] Out, double[] Rstd) RmsNormRef(float[] x, float[] w, int n, int c)
    {
        var o = new double[n * c];
        var rstd = new double[n];
        for (int i = 0; i < n; i++)
        {
            double ms = 0;
            for (int j = 0; j < c; j++)
            {
                ms += (double)x[i * c + j] * x[i * c + j];
            }

            double r = 1 / Math.Sqrt(ms / c + Eps);
            rstd[i] = r;
            for (int j = 0; j < c; j++)
            {
                o[i * c + j] = x[i * c + j] * r * w[j];
            }
        }

        return (o, rstd);
    }

    private static (double[] Dx, double[] Dw) RmsNormGradRef(float[] dout, float[] x, float[] w, int n, int c)
    {
        (_, double[] rstd) = RmsNormRef(x, w, n, c);
        var dx = new double[n * c];
        var dw = new double[c];
        for (int i = 0; i < n; i++)
        {
            double sumDnXh = 0;
            for (int j = 0; j < c; j++)
            {
                double xh = x[i * c + j] * rstd[i];
                sumDnXh += (double)dout[i * c + j] * w[j] * xh;
                dw[j] += dout[i * c + j] * xh;
            }

            for (int j = 0; j < c; j++)
            {
                double xh = x[i * c + j] * rstd[i];
                dx[i * c + j] = rstd[i] * ((double)dout[i * c + j] * w[j] - xh * sumDnXh / c);
            }
        }

        return (dx, dw);
    }

    // ---- kernel runners ----

    private static (float[] Out, float[] Mean, float[] Rstd) LayerNorm(CpuAccelerator acc, float[] x, float[] w, float[]? b, int n, int c)
    {
        using DeviceBuffer xb = acc.Put(x), wb = acc.Put(w), ob = acc.Allocate((long)n * c), mb = acc.Allocate(n), rb = acc.Allocate(n);
        using DeviceBuffer? bb = b is null ? null : acc.Put(b);
        acc.LayerNormForward(ob.All, mb.All, rb.All, xb.All, wb.All, bb?.All ?? default, n, c, Eps);
        return (acc.Get(ob), acc.Get(mb), acc.Get(rb));
    }

    /// <summary>Runs the LayerNorm backward, accumulating into copies of dx0, dw0 and db0 (db0 null: no dbias).</summary>
    private static (float[] Dx, float[] Dw, float[]? Db) LayerNormBackward(CpuAccelerator acc, float[] dout, float[] x, float[] w,
        int n, int c, float[] dx0, float[] dw0, float[]? db0)
    {
        (_, float[] mean, float[] rstd) = LayerNorm(acc, x, w, null, n, c);
        using DeviceBuffer gb = acc.Put(dout), xb = acc.Put(x), wb = acc.Put(w), mb = acc.Put(mean), rb = acc.Put(rstd);
        using DeviceBuffer dxb = acc.Put(dx0), dwb = acc.Put(dw0);
        using DeviceBuffer? dbb = db0 is null ? null : acc.Put(db0);
        acc.LayerNormBackward(dxb.All, dwb.All, dbb?.All ?? default, gb.All, xb.All, wb.All, mb.All, rb.All, n, c);
        return (acc.Get(dxb), acc.Get(dwb), dbb is null ? null : acc.Get(dbb));
    }

    private static (float[] Out, float[] Rstd) RmsNorm(CpuAccelerator acc, float[] x, float[] w, int n, int c)
    {
        using DeviceBuffer xb = acc.Put(x), wb = acc.Put(w), ob = acc.Allocate((long)n * c), rb = acc.Allocate(n);
        acc.RmsNormForward(ob.All, rb.All, xb.All, wb.All, n, c, Eps);
        return (acc.Get(ob), acc.Get(rb));
    }

    private static (float[] Dx, float[] Dw) RmsNormBackward(CpuAccelerator acc, float[] dout, float[] x, float[] w, int n, int c,
        float[] dx0, float[] dw0)
    {
        (_, float[] rstd) = RmsNorm(acc, x, w, n, c);
        using DeviceBuffer gb = acc.Put(dout), xb = acc.Put(x), wb = acc.Put(w), rb = acc.Put(rstd);
        using DeviceBuffer dxb = acc.Put(dx0), dwb = acc.Put(dw0);
        acc.RmsNormBackward(dxb.All, dwb.All, gb.All, xb.All, wb.All, rb.All, n, c);
        return (acc.Get(dxb), acc.Get(dwb));
    }

    /// <summary>Inputs with a common offset, so a one-pass variance would lose digits.</summary>
    private static float[] Rows(int seed, int n, int c, float offset)
    {
        float[] x = TestData.Uniform(seed, (long)n * c);
        for (int i = 0; i < x.Length; i++)
        {
            x[i] += offset;
        }

        return x;
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

    // ---- LayerNorm ----

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(3, 768)]
    [InlineData(1000, 37)] // several row chunks: runs on the pool
    public void LayerNorm_Forward_MatchesDoubleReference(int n, int c)
    {
        float[] x = Rows(1, n, c, 3f);
        float[] w = TestData.Uniform(2, c, 2f), b = TestData.Uniform(3, c);
        (float[] o, float[] mean, float[] rstd) = LayerNorm(cpu, x, w, b, n, c);
        (double[] eo, double[] emean, double[] erstd) = LayerNormRef(x, w, b, n, c);
        Compare.Close(eo, o, 5e-7, "layernorm out");
        ElementsClose(emean, mean, 1e-7, 0, "layernorm mean");
        ElementsClose(erstd, rstd, 1e-6, 0, "layernorm rstd");
    }

    [Fact]
    public void LayerNorm_Forward_WithoutBias_EqualsZeroBias()
    {
        const int n = 7, c = 37;
        float[] x = Rows(4, n, c, 0f), w = TestData.Uniform(5, c);
        (float[] none, _, _) = LayerNorm(cpu, x, w, null, n, c);
        (float[] zero, _, _) = LayerNorm(cpu, x, w, new float[c], n, c);
        BitIdentical(zero, none, "layernorm without bias");
        Compare.Close(LayerNormRef(x, w, null, n, c).Out, none, 5e-7, "layernorm without bias");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(3, 768)]
    [InlineData(1000, 37)] // 32 gradient chunks, reduced in order
    public void LayerNorm_Backward_AccumulatesReferenceGradients(int n, int c)
    {
        float[] x = Rows(6, n, c, 1f), w = TestData.Uniform(7, c, 2f), dout = TestData.Uniform(8, (long)n * c);
        float[] dx0 = TestData.Uniform(9, (long)n * c), dw0 = TestData.Uniform(10, c), db0 = TestData.Uniform(11, c);
        (float[] dx, float[] dw, float[]? db) = LayerNormBackward(cpu, dout, x, w, n, c, dx0, dw0, db0);
        (double[] edx, double[] edw, double[] edb) = LayerNormGradRef(dout, x, w, n, c);
        Compare.Close(Plus(dx0, edx), dx, 1e-6, "layernorm dx");
        Compare.Close(Plus(dw0, edw), dw, 1e-6, "layernorm dweight");
        Compare.Close(Plus(db0, edb), db!, 1e-6, "layernorm dbias");
    }

    [Theory]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(300, 37)]
    public void LayerNorm_Backward_MatchesFiniteDifferences(int n, int c)
    {
        float[] x = Rows(12, n, c, 0.5f), w = TestData.Uniform(13, c, 2f), b = TestData.Uniform(14, c);
        float[] g = TestData.Uniform(15, (long)n * c);
        (float[] dx, float[] dw, float[]? db) = LayerNormBackward(cpu, g, x, w, n, c, new float[n * c], new float[c], new float[c]);
        FiniteDifference.Check(x, dx, xs => Dot(g, LayerNormRef(xs, w, b, n, c).Out), "layernorm dx", h: 1e-3);
        FiniteDifference.Check(w, dw, ws => Dot(g, LayerNormRef(x, ws, b, n, c).Out), "layernorm dweight", h: 1e-3);
        FiniteDifference.Check(b, db!, bs => Dot(g, LayerNormRef(x, w, bs, n, c).Out), "layernorm dbias", h: 1e-3);
    }

    [Fact]
    public void LayerNorm_Backward_WithoutDbias_GivesTheSameDxAndDweight()
    {
        const int n = 100, c = 37;
        float[] x = Rows(16, n, c, 0f), w = TestData.Uniform(17, c), dout = TestData.Uniform(18, n * c);
        (float[] dx1, float[] dw1, _) = LayerNormBackward(cpu, dout, x, w, n, c, new float[n * c], new float[c], new float[c]);
        (float[] dx2, float[] dw2, float[]? db2) = LayerNormBackward(cpu, dout, x, w, n, c, new float[n * c], new float[c], null);
        Assert.Null(db2);
        BitIdentical(dx1, dx2, "layernorm dx without dbias");
        BitIdentical(dw1, dw2, "layernorm dweight without dbias");
    }

    // ---- RMSNorm ----

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(3, 896)]
    [InlineData(1000, 37)]
    public void RmsNorm_Forward_MatchesDoubleReference(int n, int c)
    {
        float[] x = Rows(21, n, c, 0.5f), w = TestData.Uniform(22, c, 2f);
        (float[] o, float[] rstd) = RmsNorm(cpu, x, w, n, c);
        (double[] eo, double[] erstd) = RmsNormRef(x, w, n, c);
        Compare.Close(eo, o, 5e-7, "rmsnorm out");
        ElementsClose(erstd, rstd, 1e-7, 0, "rmsnorm rstd");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(3, 896)]
    [InlineData(1000, 37)]
    public void RmsNorm_Backward_AccumulatesReferenceGradients(int n, int c)
    {
        float[] x = Rows(23, n, c, 0.5f), w = TestData.Uniform(24, c, 2f), dout = TestData.Uniform(25, (long)n * c);
        float[] dx0 = TestData.Uniform(26, (long)n * c), dw0 = TestData.Uniform(27, c);
        (float[] dx, float[] dw) = RmsNormBackward(cpu, dout, x, w, n, c, dx0, dw0);
        (double[] edx, double[] edw) = RmsNormGradRef(dout, x, w, n, c);
        Compare.Close(Plus(dx0, edx), dx, 1e-6, "rmsnorm dx");
        Compare.Close(Plus(dw0, edw), dw, 1e-6, "rmsnorm dweight");
    }

    [Theory]
    [InlineData(1, 37)]
    [InlineData(5, 16)]
    [InlineData(300, 37)]
    public void RmsNorm_Backward_MatchesFiniteDifferences(int n, int c)
    {
        float[] x = Rows(28, n, c, 0.5f), w = TestData.Uniform(29, c, 2f), g = TestData.Uniform(30, (long)n * c);
        (float[] dx, float[] dw) = RmsNormBackward(cpu, g, x, w, n, c, new float[n * c], new float[c]);
        FiniteDifference.Check(x, dx, xs => Dot(g, RmsNormRef(xs, w, n, c).Out), "rmsnorm dx", h: 1e-3);
        FiniteDifference.Check(w, dw, ws => Dot(g, RmsNormRef(x, ws, n, c).Out), "rmsnorm dweight", h: 1e-3);
    }

    [Fact]
    public void Ops_DoNotAllocate()
    {
        const int n = 1000, c = 37;
        using CpuAccelerator one = TestDevices.Cpu(1);
        using DeviceBuffer x = one.Put(Rows(41, n, c, 0f)), w = one.Put(TestData.Uniform(42, c)), b = one.Put(TestData.Uniform(43, c));
        using DeviceBuffer o = one.Allocate(n * c), m = one.Allocate(n), r = one.Allocate(n), dx = one.Allocate(n * c);
        using DeviceBuffer dw = one.Allocate(c), db = one.Allocate(c);
        void Run()
        {
            one.LayerNormForward(o.All, m.All, r.All, x.All, w.All, b.All, n, c, Eps);
            one.LayerNormBackward(dx.All, dw.All, db.All, o.All, x.All, w.All, m.All, r.All, n, c);
            one.RmsNormForward(o.All, r.All, x.All, w.All, n, c, Eps);
            one.RmsNormBackward(dx.All, dw.All, o.All, x.All, w.All, r.All, n, c);
        }

        DoesNotAllocate(Run);
    }

    // ---- determinism ----

    [Theory]
    [InlineData(1000, 37)]
    [InlineData(777, 200)]
    public void OneAndTwoThreads_GiveIdenticalBits(int n, int c)
    {
        float[] x = Rows(31, n, c, 1f), w = TestData.Uniform(32, c), b = TestData.Uniform(33, c), dout = TestData.Uniform(34, (long)n * c);
        float[] dx0 = TestData.Uniform(35, (long)n * c), dw0 = TestData.Uniform(36, c), db0 = TestData.Uniform(37, c);
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);

        (float[] o1, float[] m1, float[] r1) = LayerNorm(one, x, w, b, n, c);
        (float[] o2, float[] m2, float[] r2) = LayerNorm(two, x, w, b, n, c);
        BitIdentical(o1, o2, "layernorm out");
        BitIdentical(m1, m2, "layernorm mean");
        BitIdentical(r1, r2, "layernorm rstd");

        (float[] dx1, float[] dw1, float[]? db1) = LayerNormBackward(one, dout, x, w, n, c, dx0, dw0, db0);
        (float[] dx2, float[] dw2, float[]? db2) = LayerNormBackward(two, dout, x, w, n, c, dx0, dw0, db0);
        BitIdentical(dx1, dx2, "layernorm dx");
        BitIdentical(dw1, dw2, "layernorm dweight");
        BitIdentical(db1!, db2!, "layernorm dbias");

        (float[] ro1, float[] rr1) = RmsNorm(one, x, w, n, c);
        (float[] ro2, float[] rr2) = RmsNorm(two, x, w, n, c);
        BitIdentical(ro1, ro2, "rmsnorm out");
        BitIdentical(rr1, rr2, "rmsnorm rstd");

        (float[] rdx1, float[] rdw1) = RmsNormBackward(one, dout, x, w, n, c, dx0, dw0);
        (float[] rdx2, float[] rdw2) = RmsNormBackward(two, dout, x, w, n, c, dx0, dw0);
        BitIdentical(rdx1, rdx2, "rmsnorm dx");
        BitIdentical(rdw1, rdw2, "rmsnorm dweight");
    }
}
