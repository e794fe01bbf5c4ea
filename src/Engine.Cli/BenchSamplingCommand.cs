using System.CommandLine;
using Engine.Core;
using Engine.Generation;

namespace Engine.Cli;

/// <summary><c>engine bench-sampling</c>: one sampler of Infinite Sampling on G samples of one random prompt (random weights).</summary>
internal static class BenchSamplingCommand
{
    public static Command Create()
    {
        var shape = new ModelShapeOptions();
        var samples = new Option<int>("--samples-per-prompt") { Description = "responses to the prompt (G)", DefaultValueFactory = _ => 32 };
        var promptLength = new Option<int>("--prompt-len") { Description = "prompt tokens", DefaultValueFactory = _ => 16 };
        var newTokens = new Option<int>("--new-tokens") { Description = "most tokens generated per response", DefaultValueFactory = _ => 1024 };
        var sampler = new Option<string>("--sampler")
        {
            Description = "full, micro, continuous or infinite, or several separated by commas (timed in turn, one JSON line each)", DefaultValueFactory = _ => "infinite",
        };
        var repeats = new Option<int>("--repeats") { Description = "timed runs of each sampler (in turn across samplers); the line gives the median run", DefaultValueFactory = _ => 1 };
        var budget = new Option<double>("--kv-budget-mb") { Description = "KV cache budget in MiB (default: what full-group decoding needs; with several samplers, full always runs at that)" };
        var eosBias = new Option<float>("--eos-bias") { Description = "added to the end-of-sequence logit (token 0), so lengths vary", DefaultValueFactory = _ => 0f };
        var predictor = new Option<string>("--predictor") { Description = "length predictor of the infinite sampler: online or oracle", DefaultValueFactory = _ => "online" };
        var prefix = new Option<int>("--prefix-tokens") { Description = "k: tokens generated before a length is predicted", DefaultValueFactory = _ => 16 };
        var keepProbeKv = new Option<bool>("--keep-probe-kv") { Description = "infinite: probed samples keep their KV while they wait (default: freed, recomputed on resume)" };
        var command = new Command("bench-sampling",
            "Time one sampler (full, micro groups, continuous, infinite) on G samples of one random prompt; prints one JSON line.");
        shape.AddTo(command);
        command.Options.Add(samples);
        command.Options.Add(promptLength);
        command.Options.Add(newTokens);
        command.Options.Add(sampler);
        command.Options.Add(budget);
        command.Options.Add(eosBias);
        command.Options.Add(predictor);
        command.Options.Add(prefix);
        command.Options.Add(keepProbeKv);
        command.Options.Add(repeats);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            SamplerKind[] kinds = [.. r.GetValue(sampler)!.Split(',', StringSplitOptions.TrimEntries).Select(k => Config.OptionsBinder.ParseEnum<SamplerKind>(k, "--sampler"))];
            int n = r.GetValue(repeats);
            if (n < 1)
            {
                throw new EngineException($"--repeats must be at least 1, got {n}");
            }

            string predictorName = r.GetValue(predictor)!;
            if (predictorName is not ("online" or "oracle"))
            {
                throw new EngineException($"unknown --predictor '{predictorName}': use online or oracle");
            }

            double mb = r.GetValue(budget);
            if (mb < 0 || double.IsNaN(mb))
            {
                throw new EngineException($"--kv-budget-mb must be positive, got {mb}");
            }

            int p = r.GetValue(promptLength), tokens = r.GetValue(newTokens);
            var config = shape.Build(r, p + tokens + 1);
            using Accelerator acc = Backends.Registry.Open(r.GetValue(shape.Device));
            var benches = new List<SamplingBenchmark>();
            try
            {
                foreach (SamplerKind kind in kinds)
                {
                    // Beside other samplers, full decodes the whole group at the KV it needs (0: the default); the budget is the others'.
                    long budgetBytes = kind == SamplerKind.Full && kinds.Length > 1 ? 0 : (long)(mb * (1 << 20));
                    benches.Add(new SamplingBenchmark(acc, config, kind, r.GetValue(samples), p, tokens, budgetBytes, r.GetValue(eosBias),
                        oracle: predictorName == "oracle", prefixTokens: r.GetValue(prefix), recomputeProbes: !r.GetValue(keepProbeKv)));
                }

                // In turn, so that a slow spell of the machine falls on every sampler alike.
                var runs = kinds.Select(_ => new List<SamplingRun>()).ToArray();
                for (int i = 0; i < n; i++)
                {
                    for (int b = 0; b < benches.Count; b++)
                    {
                        runs[b].Add(benches[b].Run());
                    }
                }

                for (int b = 0; b < benches.Count; b++)
                {
                    if (runs[b].Select(x => x.CompletionsSha256).Distinct().Count() != 1)
                    {
                        throw new EngineException($"bench-sampling: the repeated runs of {Config.OptionsBinder.Name(kinds[b])} gave different completions");
                    }

                    SamplingRun median = runs[b].OrderBy(x => x.WallMs).ElementAt(n / 2);
                    Console.WriteLine(median.ToJson(Config.OptionsBinder.Name(kinds[b]), benches[b].BudgetBytes, runs[b]));
                }
            }
            finally
            {
                benches.ForEach(x => x.Dispose());
            }

            return 0;
        }));
        return command;
    }
}
