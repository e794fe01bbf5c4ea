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
        var sampler = new Option<string>("--sampler") { Description = "full, micro, continuous or infinite", DefaultValueFactory = _ => "infinite" };
        var budget = new Option<double>("--kv-budget-mb") { Description = "KV cache budget in MiB (default: what full-group decoding needs)" };
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
        command.SetAction(r => CommandLine.Guard(() =>
        {
            SamplerKind kind = Config.OptionsBinder.ParseEnum<SamplerKind>(r.GetValue(sampler)!, "--sampler");
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

            int p = r.GetValue(promptLength), n = r.GetValue(newTokens);
            var config = shape.Build(r, p + n + 1);
            using Accelerator acc = Backends.Registry.Open(r.GetValue(shape.Device));
            using var bench = new SamplingBenchmark(acc, config, kind, r.GetValue(samples), p, n, (long)(mb * (1 << 20)), r.GetValue(eosBias),
                oracle: predictorName == "oracle", prefixTokens: r.GetValue(prefix),
                recomputeProbes: !r.GetValue(keepProbeKv));
            Console.WriteLine(bench.Run().ToJson(Config.OptionsBinder.Name(kind), bench.BudgetBytes));
            return 0;
        }));
        return command;
    }
}
