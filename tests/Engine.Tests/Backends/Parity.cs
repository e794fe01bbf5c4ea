using System.Globalization;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>
/// Accelerators of one parity test class: the CPU reference and each device under test, opened
/// on first use and disposed with the class.
/// </summary>
public sealed class BackendFixture : IDisposable
{
    private readonly Dictionary<string, Accelerator> opened = new(StringComparer.Ordinal);
    private CpuAccelerator? cpu;

    /// <summary>The CPU backend, the reference.</summary>
    internal CpuAccelerator Cpu => cpu ??= TestDevices.Cpu();

    /// <summary>The accelerator of a device spec (from <see cref="BackendDevicesAttribute"/>).</summary>
    internal Accelerator Device(string spec)
    {
        Assert.NotEqual(BackendDevices.None, spec);
        if (!opened.TryGetValue(spec, out Accelerator? acc))
        {
            acc = global::Engine.Backends.Registry.Open(spec);
            opened[spec] = acc;
        }

        return acc;
    }

    public void Dispose()
    {
        foreach (Accelerator acc in opened.Values)
        {
            acc.Dispose();
        }

        opened.Clear();
        cpu?.Dispose();
    }
}

/// <summary>
/// The host-side operands of one op: float or int arrays by name. On each accelerator every
/// operand gets its own buffer with guard elements before and after the view (so element offsets
/// are never zero and writes outside a view are caught).
/// </summary>
internal sealed class Operands
{
    /// <summary>Guard elements before each view (odd, so views are not 16-byte aligned).</summary>
    public const int Before = 3;

    /// <summary>Guard elements after each view.</summary>
    public const int After = 5;

    private const float FloatGuard = 1234.5f;
    private const int IntGuard = -7777;

    private readonly List<(string Name, float[]? F, int[]? I)> items = [];

    public Operands F(string name, float[] data)
    {
        items.Add((name, data, null));
        return this;
    }

    public Operands I(string name, int[] data)
    {
        items.Add((name, null, data));
        return this;
    }

    /// <summary>A float operand of <paramref name="length"/> zeros (an output).</summary>
    public Operands Zeros(string name, long length) => F(name, new float[length]);

    /// <summary>Uploads every operand to <paramref name="acc"/>, runs <paramref name="op"/>, and returns every operand's final contents.</summary>
    public Results Run(Accelerator acc, Action<Accelerator, Views> op)
    {
        var buffers = new Dictionary<string, (DeviceBuffer Buffer, Tensor View)>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, f, i) in items)
            {
                long length = f?.Length ?? i!.Length;
                DeviceBuffer buffer = acc.Allocate(Before + length + After, f is null ? DType.I32 : DType.F32);
                Tensor view = buffer.Slice(Before, length);
                if (f is null)
                {
                    acc.Upload(buffer.All, Guarded(i!, IntGuard));
                }
                else
                {
                    acc.Upload(buffer.All, Guarded(f, FloatGuard));
                }

                buffers[name] = (buffer, view);
            }

            op(acc, new Views(buffers));
            acc.Synchronize();
            var results = new Results();
            foreach (var (name, f, _) in items)
            {
                DeviceBuffer buffer = buffers[name].Buffer;
                if (f is null)
                {
                    int[] all = acc.ToIntArray(buffer.All);
                    CheckGuards(all, IntGuard, name);
                    results.Ints[name] = all[Before..^After];
                }
                else
                {
                    float[] all = acc.ToArray(buffer.All);
                    CheckGuards(all, FloatGuard, name);
                    results.Floats[name] = all[Before..^After];
                }
            }

            return results;
        }
        finally
        {
            foreach (var (buffer, _) in buffers.Values)
            {
                buffer.Dispose();
            }
        }
    }

    private static T[] Guarded<T>(T[] data, T guard)
    {
        var all = new T[Before + data.Length + After];
        Array.Fill(all, guard);
        data.CopyTo(all, Before);
        return all;
    }

    private static void CheckGuards<T>(T[] all, T guard, string name)
        where T : IEquatable<T>
    {
        for (int i = 0; i < Before; i++)
        {
            Assert.True(all[i].Equals(guard), $"{name}: element {i - Before} before the view was overwritten");
        }

        for (int i = all.Length - After; i < all.Length; i++)
        {
            Assert.True(all[i].Equals(guard), $"{name}: element {i - (all.Length - After)} past the view was overwritten");
        }
    }
}

/// <summary>The views of the operands on one accelerator, by name.</summary>
internal sealed class Views(Dictionary<string, (DeviceBuffer Buffer, Tensor View)> buffers)
{
    public Tensor this[string name] => buffers[name].View;
}

/// <summary>Final operand contents after an op.</summary>
internal sealed class Results
{
    public Dictionary<string, float[]> Floats { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, int[]> Ints { get; } = new(StringComparer.Ordinal);

    public float[] this[string name] => Floats[name];
}

/// <summary>
/// Runs an op on the CPU backend and on a device and compares named outputs with a relative-error
/// bound each (<see cref="Compare.RelativeError(ReadOnlySpan{float}, ReadOnlySpan{float})"/>),
/// writing every measured error to the test output (lines starting "PARITY", for reports).
/// </summary>
internal static class Parity
{
    /// <summary>Runs <paramref name="op"/> on both accelerators; returns (cpu, device) results.</summary>
    public static (Results Cpu, Results Device) Run(BackendFixture fx, string spec, Operands operands, Action<Accelerator, Views> op) =>
        (operands.Run(fx.Cpu, op), operands.Run(fx.Device(spec), op));

    /// <summary>Runs the op on both and checks each (output, bound) pair.</summary>
    public static (Results Cpu, Results Device) Check(BackendFixture fx, string spec, ITestOutputHelper output, string op,
        Operands operands, Action<Accelerator, Views> run, params (string Output, double Bound)[] bounds)
    {
        var (cpu, dev) = Run(fx, spec, operands, run);
        foreach (var (name, bound) in bounds)
        {
            Close(output, spec, $"{op}.{name}", cpu[name], dev[name], bound);
        }

        return (cpu, dev);
    }

    /// <summary>Compares one output, reports it, and asserts the bound.</summary>
    public static double Close(ITestOutputHelper output, string spec, string what, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual,
        double bound)
    {
        double err = Compare.RelativeError(expected, actual);
        Record(output, spec, what, err, bound);
        Assert.True(err <= bound, $"{what} on {spec}: relative error {err:E3} vs the CPU exceeds {bound:E1}");
        return err;
    }

    /// <summary>Reports a measured error (already computed).</summary>
    public static void Record(ITestOutputHelper output, string spec, string what, double err, double bound) =>
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"PARITY {what,-44} {spec,-10} rel.err {err:E2} (bound {bound:E0})"));

    /// <summary>Asserts two integer outputs are equal, reporting the number of differences.</summary>
    public static void Equal(ITestOutputHelper output, string spec, string what, int[] expected, int[] actual)
    {
        int diffs = expected.Zip(actual, (a, b) => a == b ? 0 : 1).Sum();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"PARITY {what,-44} {spec,-10} {diffs} of {expected.Length} differ"));
        Assert.True(diffs == 0, $"{what} on {spec}: {diffs} of {expected.Length} values differ from the CPU (first: {FirstDiff(expected, actual)})");
    }

    private static string FirstDiff(int[] a, int[] b)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] != b[i])
            {
                return $"[{i}] cpu {a[i]}, device {b[i]}";
            }
        }

        return "none";
    }
}
