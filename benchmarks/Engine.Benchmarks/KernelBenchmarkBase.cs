using BenchmarkDotNet.Attributes;
using Engine.Core;
using Engine.Model;

namespace Engine.Benchmarks;

/// <summary>
/// Shared set-up of the kernel-level suites: the backend and the model preset as parameters, the
/// accelerator, and device buffers filled with seeded random values, all released after the run.
/// Shapes come from the preset's train step (<see cref="Presets.TrainShape"/>), so a kernel is
/// timed at the size the train-step suite runs it.
/// </summary>
public abstract class KernelBenchmarkBase : DevicePresetBenchmark
{
    private readonly List<DeviceBuffer> buffers = [];

    private protected Accelerator Acc { get; private set; } = null!;

    /// <summary>The preset's model shape, with positions for its train sequence length.</summary>
    private protected ModelConfig Config => Presets.Config(Preset, Presets.TrainShape(Preset).Seq);

    /// <summary>Token rows of one train step (B * T).</summary>
    private protected int Rows => Presets.TrainTokens(Preset);

    /// <summary>Releases the buffers and the accelerator.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (DeviceBuffer buffer in buffers)
        {
            buffer.Dispose();
        }

        buffers.Clear();
        Acc?.Dispose();
    }

    /// <summary>Opens the accelerator; the first call of every suite's set-up.</summary>
    private protected void Open() => Acc = BenchmarkDevices.Open(Device);

    /// <summary>A zero-filled buffer.</summary>
    private protected Tensor Zeros(long length, DType type = DType.F32)
    {
        DeviceBuffer buffer = Acc.Allocate(length, type);
        buffers.Add(buffer);
        return buffer.All;
    }

    /// <summary>A buffer of uniform values in [offset - scale/2, offset + scale/2).</summary>
    private protected Tensor Random(long length, int seed, float scale = 1f, float offset = 0f)
    {
        Tensor t = Zeros(length);
        Acc.Upload(t, RandomValues(length, seed, scale, offset));
        return t;
    }

    /// <summary>A buffer holding the given integers.</summary>
    private protected Tensor Ints(int[] values)
    {
        Tensor t = Zeros(values.Length, DType.I32);
        Acc.Upload(t, values);
        return t;
    }

    /// <summary>Seeded uniform values in [offset - scale/2, offset + scale/2).</summary>
    internal static float[] RandomValues(long length, int seed, float scale = 1f, float offset = 0f)
    {
        var rng = new Random(seed);
        var data = new float[length];
        for (long i = 0; i < length; i++)
        {
            data[i] = offset + scale * (float)(rng.NextDouble() - 0.5);
        }

        return data;
    }
}
