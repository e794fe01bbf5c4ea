using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using static Engine.Tests.Kernels.ElementwiseAssert;

namespace Engine.Tests.Kernels;

/// <summary>RoPE (rotate-half pairing) on the CPU backend against a double-precision reference.</summary>
public sealed class RopeTests : IDisposable
{
    private const int TablePositions = 50;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    /// <summary>Row layouts: heads of size D, of which [firstHead, firstHead + heads) rotate.</summary>
    public static TheoryData<int, int, int, int, int> Layouts => new()
    {
        // n, d, rowStride, firstHead, heads
        { 1, 2, 2, 0, 1 },
        { 3, 64, 5 * 64, 0, 4 },       // fused qkv: 3 query heads + 1 key head rotate, the value head does not
        { 4, 38, 4 * 38 + 5, 1, 2 },   // D/2 = 19 (vector + tail), heads in the middle of an odd-length row
        { 2, 128, 3 * 128, 1, 2 },
        { 700, 38, 3 * 38, 0, 2 },     // several row chunks: runs on the pool
    };

    /// <summary>HF tables: angle(p, j) = p * theta^(-2j/D), stored as float [P, D/2].</summary>
    private static (float[] Cos, float[] Sin) Tables(int d)
    {
        int half = d / 2;
        var cos = new float[TablePositions * half];
        var sin = new float[TablePositions * half];
        for (int p = 0; p < TablePositions; p++)
        {
            for (int j = 0; j < half; j++)
            {
                double angle = p * Math.Pow(10000, -2.0 * j / d);
                cos[p * half + j] = (float)Math.Cos(angle);
                sin[p * half + j] = (float)Math.Sin(angle);
            }
        }

        return (cos, sin);
    }

    /// <summary>Positions that differ from the row index, so reading the row index instead would fail.</summary>
    private static int[] Positions(int n) => Enumerable.Range(0, n).Select(i => (7 * i + 3) % TablePositions).ToArray();

    /// <summary>
    /// Reference in double: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (sign = -1 gives the
    /// transpose: dx1 = dy1 cos + dy2 sin, dx2 = dy2 cos - dy1 sin). Elements outside the heads copy.
    /// </summary>
    private static double[] RopeRef(float[] x, int[] pos, float[] cos, float[] sin, int n, int d, int rowStride, int firstHead, int heads,
        double sign = 1)
    {
        int half = d / 2;
        double[] y = ToDouble(x);
        for (int i = 0; i < n; i++)
        {
            for (int h = firstHead; h < firstHead + heads; h++)
            {
                for (int j = 0; j < half; j++)
                {
                    int a = i * rowStride + h * d + j, b = a + half;
                    double c = cos[pos[i] * half + j], s = sign * sin[pos[i] * half + j];
                    y[a] = x[a] * c - x[b] * s;
                    y[b] = x[b] * c + x[a] * s;
                }
            }
        }

        return y;
    }

    private static float[] Rope(CpuAccelerator acc, float[] x, int[] pos, float[] cos, float[] sin, int n, int d, int rowStride,
        int firstHead, int heads, bool backward = false)
    {
        using DeviceBuffer xb = acc.Put(x), pb = acc.Put(pos), cb = acc.Put(cos), sb = acc.Put(sin);
        if (backward)
        {
            acc.RopeBackward(xb.All, pb.All, cb.All, sb.All, n, rowStride, firstHead, heads, d);
        }
        else
        {
            acc.RopeForward(xb.All, pb.All, cb.All, sb.All, n, rowStride, firstHead, heads, d);
        }

        return acc.Get(xb);
    }

    /// <summary>Asserts that the elements outside the rotated heads kept their bits.</summary>
    private static void AssertUntouched(float[] before, float[] after, int n, int d, int rowStride, int firstHead, int heads)
    {
        for (int i = 0; i < n * rowStride; i++)
        {
            int col = i % rowStride;
            if (col < firstHead * d || col >= (firstHead + heads) * d)
            {
                Assert.True(BitConverter.SingleToInt32Bits(before[i]) == BitConverter.SingleToInt32Bits(after[i]),
                    $"element {i} (column {col}) outside the rotated heads changed");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Forward_MatchesDoubleReference(int n, int d, int rowStride, int firstHead, int heads)
    {
        float[] x = TestData.Uniform(1, (long)n * rowStride);
        int[] pos = Positions(n);
        (float[] cos, float[] sin) = Tables(d);
        float[] y = Rope(cpu, x, pos, cos, sin, n, d, rowStride, firstHead, heads);
        Compare.Close(RopeRef(x, pos, cos, sin, n, d, rowStride, firstHead, heads), y, 3e-7, "rope");
        AssertUntouched(x, y, n, d, rowStride, firstHead, heads);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Backward_IsTheTransposeRotation_AndMatchesFiniteDifferences(int n, int d, int rowStride, int firstHead, int heads)
    {
        float[] x = TestData.Uniform(2, (long)n * rowStride);
        float[] g = TestData.Uniform(3, (long)n * rowStride);
        int[] pos = Positions(n);
        (float[] cos, float[] sin) = Tables(d);
        float[] dx = Rope(cpu, g, pos, cos, sin, n, d, rowStride, firstHead, heads, backward: true);
        Compare.Close(RopeRef(g, pos, cos, sin, n, d, rowStride, firstHead, heads, sign: -1), dx, 3e-7, "rope backward");
        AssertUntouched(g, dx, n, d, rowStride, firstHead, heads);
        FiniteDifference.Check(x, dx, xs => Dot(g, RopeRef(xs, pos, cos, sin, n, d, rowStride, firstHead, heads)), "rope backward");
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ForwardThenBackward_ReturnsTheInput(int n, int d, int rowStride, int firstHead, int heads)
    {
        float[] x = TestData.Uniform(4, (long)n * rowStride);
        int[] pos = Positions(n);
        (float[] cos, float[] sin) = Tables(d);
        using DeviceBuffer xb = cpu.Put(x), pb = cpu.Put(pos), cb = cpu.Put(cos), sb = cpu.Put(sin);
        cpu.RopeForward(xb.All, pb.All, cb.All, sb.All, n, rowStride, firstHead, heads, d);
        float[] rotated = cpu.Get(xb);
        cpu.RopeBackward(xb.All, pb.All, cb.All, sb.All, n, rowStride, firstHead, heads, d);
        float[] back = cpu.Get(xb);
        Compare.Close(x, back, 5e-7, "rope forward then backward");
        AssertUntouched(x, back, n, d, rowStride, firstHead, heads);

        // And the rotation did something wherever the position is not 0.
        Assert.True(Compare.RelativeError(x, rotated) > 1e-2, "rope forward left the input unchanged");
    }

    [Fact]
    public void Position_ComesFromThePositionsBuffer()
    {
        // Two identical rows at positions 9 and 9 rotate identically; at 9 and 0 the second is unrotated.
        const int d = 38, stride = 38;
        float[] row = TestData.Uniform(5, d);
        float[] x = [.. row, .. row];
        (float[] cos, float[] sin) = Tables(d);
        float[] same = Rope(cpu, x, [9, 9], cos, sin, 2, d, stride, 0, 1);
        BitIdentical(same.AsSpan(0, d), same.AsSpan(d, d), "rows at the same position");
        float[] zero = Rope(cpu, x, [9, 0], cos, sin, 2, d, stride, 0, 1);
        BitIdentical(same.AsSpan(0, d), zero.AsSpan(0, d), "row at position 9");
        BitIdentical(row, zero.AsSpan(d, d), "row at position 0 (cos 1, sin 0)");
    }

    [Fact]
    public void PositionOutsideTheTables_Throws()
    {
        const int d = 8;
        (float[] cos, float[] sin) = Tables(d);
        float[] x = TestData.Uniform(6, 2 * d);
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope(cpu, x, [1, TablePositions], cos, sin, 2, d, d, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope(cpu, x, [-1, 0], cos, sin, 2, d, d, 0, 1));
    }

    [Fact]
    public void Ops_DoNotAllocate()
    {
        const int n = 700, d = 38, stride = 3 * 38;
        (float[] cos, float[] sin) = Tables(d);
        using CpuAccelerator one = TestDevices.Cpu(1);
        using DeviceBuffer x = one.Put(TestData.Uniform(8, n * stride)), p = one.Put(Positions(n)), cb = one.Put(cos), sb = one.Put(sin);
        void Run()
        {
            one.RopeForward(x.All, p.All, cb.All, sb.All, n, stride, 0, 2, d);
            one.RopeBackward(x.All, p.All, cb.All, sb.All, n, stride, 0, 2, d);
        }

        DoesNotAllocate(Run);
    }

    [Fact]
    public void OneAndTwoThreads_GiveIdenticalBits()
    {
        const int n = 700, d = 38, stride = 3 * 38 + 1;
        float[] x = TestData.Uniform(7, (long)n * stride);
        int[] pos = Positions(n);
        (float[] cos, float[] sin) = Tables(d);
        using CpuAccelerator one = TestDevices.Cpu(1), two = TestDevices.Cpu(2);
        BitIdentical(Rope(one, x, pos, cos, sin, n, d, stride, 1, 2), Rope(two, x, pos, cos, sin, n, d, stride, 1, 2), "rope");
        BitIdentical(Rope(one, x, pos, cos, sin, n, d, stride, 0, 3, backward: true),
            Rope(two, x, pos, cos, sin, n, d, stride, 0, 3, backward: true), "rope backward");
    }
}
