using System.CommandLine;
using System.Globalization;
using Engine.Core;
using Engine.Tools;

namespace Engine.Cli;

/// <summary><c>engine bench-bandwidth</c>: the machine's memory read bandwidth, one JSON line per thread count.</summary>
internal static class BenchBandwidthCommand
{
    public static Command Create()
    {
        var megabytes = new Option<int>("--mb") { Description = "buffer size in MiB (much larger than the last-level cache)", DefaultValueFactory = _ => 1024 };
        var threads = new Option<int[]>("--threads") { Description = "thread counts to measure", DefaultValueFactory = _ => [1, 2], AllowMultipleArgumentsPerToken = true };
        var passes = new Option<int>("--passes") { Description = "timed passes over the buffer per thread count (best and median printed)", DefaultValueFactory = _ => 10 };
        var command = new Command("bench-bandwidth", "Measure the memory read bandwidth (a vector sum over a large buffer); one JSON line per thread count.")
        {
            megabytes, threads, passes,
        };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            if (r.GetValue(megabytes) <= 0)
            {
                throw new EngineException("--mb must be positive");
            }

            foreach (int t in r.GetValue(threads)!)
            {
                var x = ReadBandwidth.Measure((long)r.GetValue(megabytes) << 20, t, r.GetValue(passes));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{{\"threads\": {x.Threads}, \"bytes\": {x.Bytes}, \"best_gb_per_s\": {x.BestGBps:F1}, \"median_gb_per_s\": {x.MedianGBps:F1}, \"passes\": {x.Passes}}}"));
            }

            return 0;
        }));
        return command;
    }
}
