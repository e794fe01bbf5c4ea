using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using static Engine.Tests.Kernels.ElementwiseAssert;

namespace Engine.Tests.Kernels;

/// <summary>SumOfSquares and AdamW (torch.optim.AdamW semantics, clip_grad_norm_ clipping) on the CPU backend.</summary>
public sealed class OptimizerTests : IDisposable
{
    private const float Lr = 1e-2f, Beta1 = 0.9f, Beta2 = 0.95f, Eps = 1e-8f, Decay = 0.1f;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    // ---- SumOfSquares ----

    private static float SumOfSquares(CpuAccelerator acc, float[] x, float initial)
    {
        using DeviceBuffer xb = acc.Put(x), rb = acc.Put([initial]);
        acc.SumOfSquares(rb.All, xb.All, x.Length);
        return acc.Get(rb)[0];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(200_001)] // 4 chunks of 64K: runs on the pool
    public void SumOfSquares_AccumulatesTheDoubleSum(int n)
    {
        float[] x = TestData.Uniform(1, n, 2f);
        double expected = 0.25;
        foreach (float v in x)
        {
            expected += (double)v * v;
        }

        float actual = SumOfSquares(cpu, x, 0.25f);
        Assert.True(Math.Abs(actual - expected) <= 1.2e-7 * expected, $"sum of squares {actual:R}, expected {expected:R}");
    }

    [Fact]
    public void SumOfSquares_ReadsTheView()
    {
        float[] data = [100f, 1f, 2f, 3f, 100f];
        using DeviceBuffer xb = cpu.Put(data), rb = cpu.Allocate(3);
        cpu.SumOfSquares(rb.Slice(1, 1), xb.Slice(1, 3), 3);
        Assert.Equal([0f, 14f, 0f], cpu.Get(rb));
    }

    [Fact]
    public void SumOfSquares_OneAndTwoThreads_GiveIdenticalBits()
    {
        float[] x = TestData.Uniform(2, 300_001, 3f);
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        BitIdentical([SumOfSquares(one, x, 1f)], [SumOfSquares(two, x, 1f)], "sum of squares");
    }

    // ---- AdamW ----

    /// <summary>
    /// One step of torch.optim.AdamW in double, with the gradient scaled first by
    /// torch.nn.utils.clip_grad_norm_'s coefficient when <paramref name="maxNorm"/> is positive.
    /// </summary>
    private static void AdamWRef(double[] p, double[] m, double[] v, float[] grad, int step, double maxNorm)
    {
        double clip = 1;
        if (maxNorm > 0)
        {
            double normSquared = 0;
            foreach (float g in grad)
            {
                normSquared += (double)g * g;
            }

            clip = Math.Min(1, maxNorm / (Math.Sqrt(normSquared) + 1e-6));
        }

        double lr = Lr, b1 = Beta1, b2 = Beta2, eps = Eps, wd = Decay;
        for (int i = 0; i < p.Length; i++)
        {
            double g = grad[i] * clip;
            p[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double mhat = m[i] / (1 - Math.Pow(b1, step));
            double vhat = v[i] / (1 - Math.Pow(b2, step));
            p[i] -= lr * mhat / (Math.Sqrt(vhat) + eps);
        }
    }

    /// <summary>
    /// Runs <paramref name="grads"/>.Length AdamW steps from params p0 and zero moments. With
    /// <paramref name="passNorm"/>, the squared norm computed by SumOfSquares on the device is handed
    /// to AdamW; otherwise no norm is passed.
    /// </summary>
    private static (float[] P, float[] M, float[] V) RunAdamW(CpuAccelerator acc, float[] p0, float[][] grads, float maxNorm, bool passNorm)
    {
        int n = p0.Length;
        using DeviceBuffer pb = acc.Put(p0), mb = acc.Allocate(n), vb = acc.Allocate(n), gb = acc.Allocate(n), nb = acc.Allocate(1);
        for (int t = 1; t <= grads.Length; t++)
        {
            acc.Upload(gb.All, grads[t - 1]);
            acc.Zero(nb.All);
            acc.SumOfSquares(nb.All, gb.All, n);
            var settings = new AdamWSettings(Lr, Beta1, Beta2, Eps, Decay, t, maxNorm);
            acc.AdamW(pb.All, gb.All, mb.All, vb.All, passNorm ? nb.All : default, settings, n);
            BitIdentical(grads[t - 1], acc.Get(gb), "gradient left unmodified");
        }

        return (acc.Get(pb), acc.Get(mb), acc.Get(vb));
    }

    [Theory]
    [InlineData(1, 0f)]
    [InlineData(37, 0f)]
    [InlineData(37, 0.5f)]      // clipping active (the gradient norm is about 3.5)
    [InlineData(37, 100f)]      // clipping on but inactive
    [InlineData(100_003, 0f)]   // several chunks: runs on the pool
    [InlineData(100_003, 2f)]
    public void AdamW_ThreeSteps_MatchTheTorchUpdate(int n, float maxNorm)
    {
        float[] p0 = TestData.Uniform(3, n);
        float scale = 1f / MathF.Sqrt(Math.Max(1, n / 37f)); // keeps the norm near 3.5 whatever n
        float[][] grads = [TestData.Uniform(4, n, scale), TestData.Uniform(5, n, scale), TestData.Uniform(6, n, scale)];
        (float[] p, float[] m, float[] v) = RunAdamW(cpu, p0, grads, maxNorm, passNorm: maxNorm > 0);

        double[] ep = ToDouble(p0), em = new double[n], ev = new double[n];
        for (int t = 1; t <= 3; t++)
        {
            AdamWRef(ep, em, ev, grads[t - 1], t, maxNorm);
        }

        Compare.Close(ep, p, 1e-6, "adamw param");
        Compare.Close(em, m, 1e-6, "adamw m");
        Compare.Close(ev, v, 1e-6, "adamw v");

        // The update moved the parameters by about lr per step, beyond the decay alone.
        Assert.True(Compare.RelativeError(ep, p0) > 1e-3, "parameters did not move");
    }

    /// <summary>Values printed by PyTorch 1.13 (torch.optim.AdamW, foreach=False) for the inputs of <see cref="AdamW_MatchesPyTorch"/>.</summary>
    public static TheoryData<float, float[], float[], float[]> TorchResults => new()
    {
        {
            0f,
            [-0.365723342f, -0.262663633f, -0.143794954f, 0.0159012116f, 0.116702385f, 0.244383231f, 0.395276189f, 0.495672017f],
            [0.0410000011f, 0.0168749969f, 0.00512499735f, 0.00712500047f, -0.0170000028f, -0.0287499987f, -0.0267499965f, -0.0508750007f],
            [0.0160625f, 0.0243066419f, 0.0250800774f, 0.0133769531f, 0.0239374973f, 0.0262109376f, 0.0151484376f, 0.0280253906f]
        },
        {
            0.5f,
            [-0.365881085f, -0.262513608f, -0.143696293f, 0.0157702155f, 0.116895363f, 0.244429573f, 0.395210147f, 0.495838523f],
            [0.0191661436f, 0.0072555053f, 0.00194692914f, 0.00373639353f, -0.00817424897f, -0.0134828221f, -0.0116933594f, -0.0236040037f],
            [0.00338494382f, 0.00491336919f, 0.00527520524f, 0.00276913587f, 0.00489044003f, 0.00555464346f, 0.00307713193f, 0.00579131674f]
        },
    };

    /// <summary>
    /// Against PyTorch itself: p0[i] = (i - 3) / 8, grad_t[i] = ((7i + 3t) mod 11 - 5) / 8 (exact in
    /// float), lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, three steps, with
    /// clip_grad_norm_(max_norm) before each step when max_norm &gt; 0.
    /// </summary>
    [Theory]
    [MemberData(nameof(TorchResults))]
    public void AdamW_MatchesPyTorch(float maxNorm, float[] torchP, float[] torchM, float[] torchV)
    {
        const int n = 8;
        float[] p0 = Enumerable.Range(0, n).Select(i => (i - 3) / 8f).ToArray();
        float[][] grads = [.. Enumerable.Range(1, 3).Select(t => Enumerable.Range(0, n).Select(i => ((7 * i + 3 * t) % 11 - 5) / 8f).ToArray())];
        (float[] p, float[] m, float[] v) = RunAdamW(cpu, p0, grads, maxNorm, passNorm: maxNorm > 0);
        Compare.Close(torchP, p, 1e-6, "param vs torch");
        Compare.Close(torchM, m, 1e-6, "exp_avg vs torch");
        Compare.Close(torchV, v, 1e-6, "exp_avg_sq vs torch");
    }

    [Fact]
    public void AdamW_InactiveOrDisabledClipping_EqualsNoClipping()
    {
        const int n = 101;
        float[] p0 = TestData.Uniform(7, n);
        float[][] grads = [TestData.Uniform(8, n), TestData.Uniform(9, n), TestData.Uniform(10, n)];
        (float[] p, float[] m, float[] v) = RunAdamW(cpu, p0, grads, 0f, passNorm: false);
        (float[] p1, float[] m1, float[] v1) = RunAdamW(cpu, p0, grads, 1e6f, passNorm: true); // coefficient exactly 1
        (float[] p2, float[] m2, float[] v2) = RunAdamW(cpu, p0, grads, 0f, passNorm: true);   // max norm 0: clipping off
        (float[] p3, _, _) = RunAdamW(cpu, p0, grads, 0.1f, passNorm: false);                 // no norm given: clipping off
        BitIdentical(p, p1, "param, inactive clip");
        BitIdentical(m, m1, "m, inactive clip");
        BitIdentical(v, v1, "v, inactive clip");
        BitIdentical(p, p2, "param, max norm 0");
        BitIdentical(m, m2, "m, max norm 0");
        BitIdentical(v, v2, "v, max norm 0");
        BitIdentical(p, p3, "param, no norm");

        // And an active clip does change the result.
        (float[] pc, _, _) = RunAdamW(cpu, p0, grads, 0.1f, passNorm: true);
        Assert.True(Compare.RelativeError(p, pc) > 1e-4, "clipping had no effect");
    }

    [Fact]
    public void Ops_DoNotAllocate()
    {
        const int n = 300_001;
        using CpuAccelerator one = TestDevices.Cpu(1);
        using DeviceBuffer p = one.Put(TestData.Uniform(15, n)), g = one.Put(TestData.Uniform(16, n)), m = one.Allocate(n), v = one.Allocate(n);
        using DeviceBuffer norm = one.Allocate(1);
        var settings = new AdamWSettings(Lr, Beta1, Beta2, Eps, Decay, 1, 1f);
        void Run()
        {
            one.SumOfSquares(norm.All, g.All, n);
            one.AdamW(p.All, g.All, m.All, v.All, norm.All, settings, n);
        }

        DoesNotAllocate(Run);
    }

    [Fact]
    public void AdamW_OneAndTwoThreads_GiveIdenticalBits()
    {
        const int n = 100_003;
        float[] p0 = TestData.Uniform(11, n);
        float[][] grads = [TestData.Uniform(12, n), TestData.Uniform(13, n), TestData.Uniform(14, n)];
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        (float[] p1, float[] m1, float[] v1) = RunAdamW(one, p0, grads, 50f, passNorm: true);
        (float[] p2, float[] m2, float[] v2) = RunAdamW(two, p0, grads, 50f, passNorm: true);
        BitIdentical(p1, p2, "param");
        BitIdentical(m1, m2, "m");
        BitIdentical(v1, v2, "v");
    }
}
