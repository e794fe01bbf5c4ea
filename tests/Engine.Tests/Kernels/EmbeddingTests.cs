using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using static Engine.Tests.Kernels.ElementwiseAssert;

namespace Engine.Tests.Kernels;

/// <summary>Token + position embedding on the CPU backend against double-precision references.</summary>
public sealed class EmbeddingTests : IDisposable
{
    private const int Vocab = 23;
    private const int Positions = 19;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    /// <summary>out[i, :] = wte[tokens[i], :] + wpe[positions[i], :] in double.</summary>
    private static double[] EmbeddingRef(int[] tokens, int[] positions, float[] wte, float[]? wpe, int n, int c)
    {
        var o = new double[n * c];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c; j++)
            {
                o[i * c + j] = wte[tokens[i] * c + j] + (wpe is null ? 0 : (double)wpe[positions[i] * c + j]);
            }
        }

        return o;
    }

    /// <summary>dwte, dwpe of L = sum(dout * out), plus the initial values, in double.</summary>
    private static (double[] Dwte, double[] Dwpe) EmbeddingGradRef(float[] dout, int[] tokens, int[] positions, float[] dwte0, float[] dwpe0,
        int n, int c)
    {
        double[] dwte = ToDouble(dwte0), dwpe = ToDouble(dwpe0);
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c; j++)
            {
                dwte[tokens[i] * c + j] += dout[i * c + j];
                dwpe[positions[i] * c + j] += dout[i * c + j];
            }
        }

        return (dwte, dwpe);
    }

    private static float[] Embed(CpuAccelerator acc, int[] tokens, int[] positions, float[] wte, float[]? wpe, int n, int c)
    {
        using DeviceBuffer tb = acc.Put(tokens), pb = acc.Put(positions), eb = acc.Put(wte), ob = acc.Allocate((long)n * c);
        using DeviceBuffer? wb = wpe is null ? null : acc.Put(wpe);
        acc.EmbeddingForward(ob.All, tb.All, pb.All, eb.All, wb?.All ?? default, n, c);
        return acc.Get(ob);
    }

    /// <summary>Runs the backward accumulating into copies of dwte0 and dwpe0 (dwpe0 null: no position table).</summary>
    private static (float[] Dwte, float[]? Dwpe) EmbedBackward(CpuAccelerator acc, float[] dout, int[] tokens, int[] positions,
        float[] dwte0, float[]? dwpe0, int n, int c)
    {
        using DeviceBuffer gb = acc.Put(dout), tb = acc.Put(tokens), pb = acc.Put(positions), eb = acc.Put(dwte0);
        using DeviceBuffer? wb = dwpe0 is null ? null : acc.Put(dwpe0);
        acc.EmbeddingBackward(eb.All, wb?.All ?? default, gb.All, tb.All, pb.All, n, c);
        return (acc.Get(eb), wb is null ? null : acc.Get(wb));
    }

    /// <summary>Positions that are not the row index (the kernel must read them from the buffer).</summary>
    private static int[] PositionsFor(int n) => Enumerable.Range(0, n).Select(i => (5 * i + 2) % Positions).ToArray();

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(7, 16)]
    [InlineData(1000, 37)] // several row chunks: runs on the pool
    public void Forward_MatchesReference(int n, int c)
    {
        int[] tokens = TestData.Ints(1, n, Vocab), positions = PositionsFor(n);
        float[] wte = TestData.Uniform(2, Vocab * c), wpe = TestData.Uniform(3, Positions * c);
        float[] o = Embed(cpu, tokens, positions, wte, wpe, n, c);

        // A float sum is the correctly rounded exact sum, and the double sum of two floats is exact here.
        double[] expected = EmbeddingRef(tokens, positions, wte, wpe, n, c);
        BitIdentical(expected.Select(v => (float)v).ToArray(), o, "embedding");
    }

    [Fact]
    public void Forward_WithoutPositionTable_CopiesTokenRows()
    {
        const int n = 9, c = 37;
        int[] tokens = TestData.Ints(4, n, Vocab);
        int[] garbage = Enumerable.Repeat(int.MaxValue, n).ToArray(); // ignored without wpe
        float[] wte = TestData.Uniform(5, Vocab * c);
        float[] o = Embed(cpu, tokens, garbage, wte, null, n, c);
        BitIdentical(EmbeddingRef(tokens, garbage, wte, null, n, c).Select(v => (float)v).ToArray(), o, "embedding without wpe");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(7, 16)]
    [InlineData(300, 200)] // several column blocks: runs on the pool
    [InlineData(1000, 37)]
    public void Backward_AccumulatesReferenceGradients(int n, int c)
    {
        int[] tokens = TestData.Ints(6, n, Vocab), positions = PositionsFor(n); // many repeated rows
        float[] dout = TestData.Uniform(7, (long)n * c);
        float[] dwte0 = TestData.Uniform(8, Vocab * c), dwpe0 = TestData.Uniform(9, Positions * c);
        (float[] dwte, float[]? dwpe) = EmbedBackward(cpu, dout, tokens, positions, dwte0, dwpe0, n, c);
        (double[] edwte, double[] edwpe) = EmbeddingGradRef(dout, tokens, positions, dwte0, dwpe0, n, c);
        Compare.Close(edwte, dwte, 1e-6, "dwte");
        Compare.Close(edwpe, dwpe!, 1e-6, "dwpe");

        // Row order: each table element is the float sum of its rows taken in order.
        var ordered = (float[])dwte0.Clone();
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c; j++)
            {
                ordered[tokens[i] * c + j] += dout[i * c + j];
            }
        }

        BitIdentical(ordered, dwte, "dwte in row order");
    }

    [Fact]
    public void Backward_WithoutPositionTable_LeavesOnlyDwte()
    {
        const int n = 50, c = 37;
        int[] tokens = TestData.Ints(10, n, Vocab);
        float[] dout = TestData.Uniform(11, n * c), dwte0 = TestData.Uniform(12, Vocab * c);
        (float[] with, _) = EmbedBackward(cpu, dout, tokens, PositionsFor(n), dwte0, new float[Positions * c], n, c);
        (float[] without, float[]? none) = EmbedBackward(cpu, dout, tokens, Enumerable.Repeat(-1, n).ToArray(), dwte0, null, n, c);
        Assert.Null(none);
        BitIdentical(with, without, "dwte without dwpe");
    }

    [Fact]
    public void Backward_MatchesFiniteDifferences()
    {
        const int n = 40, c = 37;
        int[] tokens = TestData.Ints(13, n, Vocab), positions = PositionsFor(n);
        float[] wte = TestData.Uniform(14, Vocab * c), wpe = TestData.Uniform(15, Positions * c), g = TestData.Uniform(16, n * c);
        (float[] dwte, float[]? dwpe) = EmbedBackward(cpu, g, tokens, positions, new float[Vocab * c], new float[Positions * c], n, c);
        FiniteDifference.Check(wte, dwte, w => Dot(g, EmbeddingRef(tokens, positions, w, wpe, n, c)), "dwte", samples: 48);
        FiniteDifference.Check(wpe, dwpe!, p => Dot(g, EmbeddingRef(tokens, positions, wte, p, n, c)), "dwpe", samples: 48);
    }

    [Fact]
    public void IdsOutsideTheTables_Throw()
    {
        const int c = 4;
        float[] wte = new float[Vocab * c], wpe = new float[Positions * c];
        Assert.Throws<ArgumentOutOfRangeException>(() => Embed(cpu, [0, Vocab], [0, 0], wte, wpe, 2, c));
        Assert.Throws<ArgumentOutOfRangeException>(() => Embed(cpu, [0, 1], [0, -1], wte, wpe, 2, c));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmbedBackward(cpu, new float[2 * c], [-5, 1], [0, 0], wte, wpe, 2, c));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmbedBackward(cpu, new float[2 * c], [0, 1], [0, Positions], wte, wpe, 2, c));
    }

    [Fact]
    public void Ops_DoNotAllocate()
    {
        const int n = 1000, c = 200;
        using CpuAccelerator one = TestDevices.Cpu(1);
        using DeviceBuffer t = one.Put(TestData.Ints(21, n, Vocab)), p = one.Put(PositionsFor(n)), o = one.Allocate(n * c);
        using DeviceBuffer wte = one.Put(TestData.Uniform(22, Vocab * c)), wpe = one.Put(TestData.Uniform(23, Positions * c));
        void Run()
        {
            one.EmbeddingForward(o.All, t.All, p.All, wte.All, wpe.All, n, c);
            one.EmbeddingBackward(wte.All, wpe.All, o.All, t.All, p.All, n, c);
        }

        DoesNotAllocate(Run);
    }

    [Theory]
    [InlineData(1000, 37)]
    [InlineData(300, 200)]
    public void OneAndTwoThreads_GiveIdenticalBits(int n, int c)
    {
        int[] tokens = TestData.Ints(17, n, Vocab), positions = PositionsFor(n);
        float[] wte = TestData.Uniform(18, Vocab * c), wpe = TestData.Uniform(19, Positions * c), dout = TestData.Uniform(20, (long)n * c);
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        BitIdentical(Embed(one, tokens, positions, wte, wpe, n, c), Embed(two, tokens, positions, wte, wpe, n, c), "embedding");
        (float[] a1, float[]? b1) = EmbedBackward(one, dout, tokens, positions, wte, wpe, n, c);
        (float[] a2, float[]? b2) = EmbedBackward(two, dout, tokens, positions, wte, wpe, n, c);
        BitIdentical(a1, a2, "dwte");
        BitIdentical(b1!, b2!, "dwpe");
    }
}
