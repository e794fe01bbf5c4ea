using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// Copy and Zero on the CPU backend split large views into chunks that the pool's threads share:
/// every element is still written once and exactly, the neighbours of a view are left alone, and
/// overlapping views (one buffer) copy as a memmove does.
/// </summary>
public sealed class CopyZeroTests : IDisposable
{
    // Three whole chunks and a tail, so the pool gets several items and the last one is short.
    private const int Length = (3 * (int)CpuAccelerator.MemoryChunk) + 5;

    private readonly CpuAccelerator cpu = TestDevices.Cpu(2);

    public void Dispose() => cpu.Dispose();

    [Fact]
    public void Copy_of_a_large_view_moves_every_element_and_nothing_else()
    {
        float[] source = Pattern(Length + 10, 1);
        float[] target = Pattern(Length + 10, 2);
        using DeviceBuffer src = cpu.Allocate(source.Length), dst = cpu.Allocate(target.Length);
        cpu.Upload(src.All, source);
        cpu.Upload(dst.All, target);

        cpu.Copy(dst.Slice(7, Length), src.Slice(3, Length));

        float[] expected = (float[])target.Clone();
        Array.Copy(source, 3, expected, 7, Length);
        Assert.Equal(expected, cpu.ToArray(dst.All));
    }

    [Theory]
    [InlineData(0, 1000)]   // the destination ahead of the source (a forward memmove)
    [InlineData(1000, 0)]   // behind it
    public void Copy_between_overlapping_views_of_one_buffer_is_a_memmove(int from, int to)
    {
        float[] data = Pattern(Length + 1000, 3);
        using DeviceBuffer buffer = cpu.Allocate(data.Length);
        cpu.Upload(buffer.All, data);

        cpu.Copy(buffer.Slice(to, Length), buffer.Slice(from, Length));

        float[] expected = (float[])data.Clone();
        Array.Copy(data, from, expected, to, Length); // Array.Copy is defined as if through a temporary
        Assert.Equal(expected, cpu.ToArray(buffer.All));
    }

    [Fact]
    public void Zero_of_a_large_view_clears_it_and_leaves_its_neighbours()
    {
        float[] data = Pattern(Length + 20, 4);
        using DeviceBuffer buffer = cpu.Allocate(data.Length);
        cpu.Upload(buffer.All, data);

        cpu.Zero(buffer.Slice(11, Length));

        float[] expected = (float[])data.Clone();
        Array.Clear(expected, 11, Length);
        float[] actual = cpu.ToArray(buffer.All);
        Assert.Equal(expected, actual);
        Assert.All(actual.AsSpan(11, Length).ToArray(), v => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(v))); // +0, not -0
    }

    /// <summary>Distinct non-zero values (negative zeros excluded), different per seed.</summary>
    private static float[] Pattern(int length, int seed)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (seed * 1_000_003f) + i + 0.5f;
        }

        return values;
    }
}
