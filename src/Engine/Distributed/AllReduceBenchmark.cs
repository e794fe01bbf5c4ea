using System.Diagnostics;

namespace Engine.Distributed;

/// <summary>Times the fixed-order ring all-reduce alone (no model), for the communication cost model.</summary>
internal static class AllReduceBenchmark
{
    /// <summary>
    /// All-reduces <paramref name="floats"/> floats <paramref name="repeats"/> times (after one warm-up), each
    /// started together (a one-number all-reduce first); returns the median seconds per all-reduce on this rank.
    /// </summary>
    public static double MedianSeconds(ICommunicator comm, int floats, int repeats)
    {
        var data = new float[floats];
        Array.Fill(data, 1f);
        var times = new double[repeats];
        Span<long> together = [1];
        for (int i = -1; i < repeats; i++)
        {
            Collectives.AllReduceSum(comm, together);
            long start = Stopwatch.GetTimestamp();
            Collectives.AllReduceSum<float>(comm, data);
            if (i >= 0)
            {
                times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
        }

        Array.Sort(times);
        return times[repeats / 2];
    }
}
