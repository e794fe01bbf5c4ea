using System.Diagnostics;

namespace Engine.Core;

/// <summary>
/// Per-op wall time of an accelerator, for finding where a step spends its time. When attached
/// (<see cref="Accelerator.Profiler"/>), every op synchronises before and after itself so the time
/// is the op's own, which slows asynchronous backends; detached, it costs one null check per op.
/// </summary>
internal sealed class OpProfiler
{
    private readonly Dictionary<string, (long Calls, long Ticks)> totals = new(StringComparer.Ordinal);

    /// <summary>Adds one call of <paramref name="op"/> that took <paramref name="ticks"/> Stopwatch ticks.</summary>
    public void Record(string op, long ticks)
    {
        totals.TryGetValue(op, out var t);
        totals[op] = (t.Calls + 1, t.Ticks + ticks);
    }

    /// <summary>Forgets everything recorded.</summary>
    public void Reset() => totals.Clear();

    /// <summary>Ops by total time, longest first: (op, calls, milliseconds).</summary>
    public IReadOnlyList<(string Op, long Calls, double Milliseconds)> Totals() =>
        totals.OrderByDescending(kv => kv.Value.Ticks)
            .Select(kv => (kv.Key, kv.Value.Calls, kv.Value.Ticks * 1000.0 / Stopwatch.Frequency)).ToList();

    /// <summary>A table of <see cref="Totals"/>, one op per line.</summary>
    public string Report()
    {
        var rows = Totals();
        double all = rows.Sum(r => r.Milliseconds);
        return string.Join(Environment.NewLine, rows.Select(r =>
            string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{r.Op,-28} {r.Calls,8} calls {r.Milliseconds,10:F2} ms {100 * r.Milliseconds / Math.Max(all, 1e-9),6:F1}%")));
    }
}

/// <summary>Times one op when a profiler is attached; a no-op otherwise.</summary>
internal readonly struct OpScope : IDisposable
{
    private readonly Accelerator? acc;
    private readonly string? op;
    private readonly long start;

    public OpScope(Accelerator acc, string op)
    {
        if (acc.Profiler is null)
        {
            this.acc = null;
            this.op = null;
            start = 0;
            return;
        }

        acc.Synchronize();
        this.acc = acc;
        this.op = op;
        start = Stopwatch.GetTimestamp();
    }

    public void Dispose()
    {
        if (acc?.Profiler is { } p)
        {
            acc.Synchronize();
            p.Record(op!, Stopwatch.GetTimestamp() - start);
        }
    }
}
