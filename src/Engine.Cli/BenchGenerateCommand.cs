using System.CommandLine;
using System.Globalization;
using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Util;

namespace Engine.Cli;

/// <summary><c>engine bench-generate</c>: decode throughput on random weights.</summary>
internal static class BenchGenerateCommand
{
    public static Command Create()
    {
        var shape = new ModelShapeOptions();
        var batch = new Option<int>("--batch") { Description = "sequences decoded together", Required = true };
        var promptLength = new Option<int>("--prompt-len") { Description = "prompt tokens per sequence", Required = true };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens generated per sequence", Required = true };
        var samples = new Option<int>("--samples-per-prompt") { Description = "responses per prompt (G); the batch holds batch / G prompts", DefaultValueFactory = _ => 1 };
        var noSharing = new Option<bool>("--no-prefix-sharing") { Description = "prefill each response's own copy of its prompt instead of sharing the prompt's cache blocks" };
        var profile = new Option<bool>("--profile") { Description = "after timing, run once more with per-op timing and print the table to stderr" };
        var repeats = new Option<int>("--repeats") { Description = "timed runs (the median is printed)", DefaultValueFactory = _ => 3 };
        var save = new Option<string?>("--save") { Description = "before timing, write the random model as a HF checkpoint (config.json + model.safetensors) to this directory, e.g. for the llama.cpp comparison" };
        var command = new Command("bench-generate", "Time prefill and decode on random weights and prompts; prints one JSON line.");
        shape.AddTo(command);
        command.Options.Add(batch);
        command.Options.Add(promptLength);
        command.Options.Add(newTokens);
        command.Options.Add(samples);
        command.Options.Add(noSharing);
        command.Options.Add(repeats);
        command.Options.Add(profile);
        command.Options.Add(save);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            int b = r.GetValue(batch), p = r.GetValue(promptLength), n = r.GetValue(newTokens), runs = r.GetValue(repeats);
            if (b <= 0 || p <= 0 || n <= 0 || runs <= 0)
            {
                throw new EngineException("--batch, --prompt-len, --new-tokens and --repeats must be positive");
            }

            var config = shape.Build(r, p + n + 1);
            using Accelerator acc = Backends.Registry.Open(r.GetValue(shape.Device));
            using var bench = new DecodeBenchmark(acc, config, b, p, n, samplesPerPrompt: r.GetValue(samples), sharePrompts: !r.GetValue(noSharing));
            if (r.GetValue(save) is { } directory)
            {
                HfCheckpoint.Save(bench.Model, directory);
            }

            bench.Run(seed: 1);
            ulong hash = bench.ResultsHash;   // seed 1's tokens and log-probs: the same on every run of the same build and model
            var results = Enumerable.Range(0, runs).Select(i => bench.Run(seed: (ulong)(i + 2))).ToArray();
            GenerationStats median = results.OrderBy(s => s.GeneratedTokens / s.DecodeMs).ElementAt(runs / 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"decode_tokens_per_s\": {median.GeneratedTokens / (median.DecodeMs / 1000):F1}, \"prefill_ms\": {median.PrefillMs:F2}, \"peak_kv_bytes\": {median.PeakKvBytes}, \"peak_rss_mb\": {ProcessStats.PeakRssMb():F1}, \"results_hash\": \"{hash:x16}\"}}"));
            if (r.GetValue(profile))
            {
                acc.Profiler = new OpProfiler();
                bench.Run(seed: 1);
                Console.Error.WriteLine("per-op time over one generation:");
                Console.Error.WriteLine(acc.Profiler.Report());
            }

            return 0;
        }));
        return command;
    }
}
