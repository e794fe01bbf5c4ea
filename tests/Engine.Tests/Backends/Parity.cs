using System.Globalization;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;
using Engine.Tools;
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

/// <summary>The backend tests' way of running <see cref="Operands"/>: a guard element overwritten fails the test.</summary>
internal static class GuardedRun
{
    /// <summary>Runs <paramref name="op"/> on <paramref name="acc"/> over the operands; fails on the first guard element overwritten.</summary>
    public static OperandResults Run(this Operands operands, Accelerator acc, Action<Accelerator, OperandViews> op)
    {
        OperandResults results = operands.RunGuarded(acc, op);
        Assert.True(results.Overwritten.Count == 0, results.Overwritten.Select(o => o.Message).FirstOrDefault());
        return results;
    }
}


/// <summary>
/// Runs an op on the CPU backend and on a device and compares named outputs with a relative-error
/// bound each (<see cref="Compare.RelativeError(ReadOnlySpan{float}, ReadOnlySpan{float})"/>),
/// writing every measured error to the test output (lines starting "PARITY", for reports).
/// </summary>
internal static class Parity
{
    /// <summary>Runs <paramref name="op"/> on both accelerators; returns (cpu, device) results.</summary>
    public static (OperandResults Cpu, OperandResults Device) Run(BackendFixture fx, string spec, Operands operands, Action<Accelerator, OperandViews> op) =>
        (operands.Run(fx.Cpu, op), operands.Run(fx.Device(spec), op));

    /// <summary>Runs the op on both and checks each (output, bound) pair.</summary>
    public static (OperandResults Cpu, OperandResults Device) Check(BackendFixture fx, string spec, ITestOutputHelper output, string op,
        Operands operands, Action<Accelerator, OperandViews> run, params (string Output, double Bound)[] bounds)
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
