using Engine.Core;

namespace Engine.Tools;

/// <summary>
/// The host-side operands of one op: float or int arrays by name. On each accelerator every
/// operand gets its own buffer with guard elements before and after the view (odd offsets, so
/// views are never aligned, and writes outside a view are caught). Shared by
/// <c>engine check-backends</c> and the backend parity tests.
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

    /// <summary>
    /// Uploads every operand to <paramref name="acc"/>, runs <paramref name="op"/>, and returns every operand's
    /// final contents with the guard elements found overwritten (in operand order, before the view first).
    /// </summary>
    public OperandResults RunGuarded(Accelerator acc, Action<Accelerator, OperandViews> op)
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

            op(acc, new OperandViews(buffers));
            acc.Synchronize();
            var results = new OperandResults();
            foreach (var (name, f, _) in items)
            {
                DeviceBuffer buffer = buffers[name].Buffer;
                if (f is null)
                {
                    int[] all = acc.ToIntArray(buffer.All);
                    FindOverwritten(all, IntGuard, name, results.Overwritten);
                    results.Ints[name] = all[Before..^After];
                }
                else
                {
                    float[] all = acc.ToArray(buffer.All);
                    FindOverwritten(all, FloatGuard, name, results.Overwritten);
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

    private static void FindOverwritten<T>(T[] all, T guard, string name, List<(string Operand, string Message)> found)
        where T : IEquatable<T>
    {
        for (int i = 0; i < Before; i++)
        {
            if (!all[i].Equals(guard))
            {
                found.Add((name, $"{name}: element {i - Before} before the view was overwritten"));
            }
        }

        for (int i = all.Length - After; i < all.Length; i++)
        {
            if (!all[i].Equals(guard))
            {
                found.Add((name, $"{name}: element {i - (all.Length - After)} past the view was overwritten"));
            }
        }
    }
}

/// <summary>The final contents of an op's operands, by name, and the guard elements it overwrote.</summary>
internal sealed class OperandResults
{
    public Dictionary<string, float[]> Floats { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, int[]> Ints { get; } = new(StringComparer.Ordinal);

    /// <summary>Guard elements found overwritten: the operand and a message naming the element (empty: none).</summary>
    public List<(string Operand, string Message)> Overwritten { get; } = [];

    public float[] this[string name] => Floats[name];
}

/// <summary>The views of the operands on one accelerator, by name.</summary>
internal sealed class OperandViews(Dictionary<string, (DeviceBuffer Buffer, Tensor View)> buffers)
{
    public Tensor this[string name] => buffers[name].View;
}
