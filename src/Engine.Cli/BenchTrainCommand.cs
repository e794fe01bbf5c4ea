using System.CommandLine;
using System.Globalization;
using Engine.Core;
using Engine.Training;
using Engine.Util;

namespace Engine.Cli;

/// <summary><c>engine bench-train</c>: times fwd + bwd + AdamW steps on random weights and tokens.</summary>
internal static class BenchTrainCommand
{
    public static Command Create()
    {
        var shape = new ModelShapeOptions();
        var seq = new Option<int>("--seq") { Description = "sequence length T", Required = true };
        var batch = new Option<int>("--batch") { Description = "batch size B", Required = true };
        var steps = new Option<int>("--steps") { Description = "timed steps", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first", DefaultValueFactory = _ => 2 };
        var profile = new Option<bool>("--profile") { Description = "after timing, run the steps again with per-op timing and print the table to stderr" };
        var hash = new Option<bool>("--hash") { Description = "add the last loss (bits) and a SHA-256 of the weights and AdamW moments after all the steps to the JSON line" };
        var command = new Command("bench-train", "Time forward + backward + AdamW train steps on random weights and tokens; prints one JSON line.");
        shape.AddTo(command);
        command.Options.Add(seq);
        command.Options.Add(batch);
        command.Options.Add(steps);
        command.Options.Add(warmup);
        command.Options.Add(profile);
        command.Options.Add(hash);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            int t = r.GetValue(seq), b = r.GetValue(batch), n = r.GetValue(steps), w = r.GetValue(warmup);
            if (t <= 1 || b <= 0 || n <= 0 || w < 0)
            {
                throw new EngineException("--seq must be at least 2, --batch and --steps positive, --warmup not negative");
            }

            var config = shape.Build(r, t);
            using Accelerator acc = Backends.Registry.Open(r.GetValue(shape.Device));
            using var bench = new SyntheticBenchmark(acc, config, b, t);
            var (ms, loss) = bench.Measure(w, n);
            double tokensPerSecond = bench.TokensPerStep / (ms / 1000.0);
            string state = r.GetValue(hash)
                ? $", \"last_loss_bits\": \"{BitConverter.SingleToUInt32Bits(loss):x8}\", \"state_sha256\": \"{bench.StateSha256()}\""
                : "";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"ms_per_step\": {ms:F2}, \"tokens_per_s\": {tokensPerSecond:F1}, \"peak_rss_mb\": {ProcessStats.PeakRssMb():F1}{state}}}"));
            if (r.GetValue(profile))
            {
                acc.Profiler = new OpProfiler();
                bench.Measure(0, n);
                Console.Error.WriteLine($"per-op time over {n} steps:");
                Console.Error.WriteLine(acc.Profiler.Report());
            }
            return 0;
        }));
        return command;
    }
}
