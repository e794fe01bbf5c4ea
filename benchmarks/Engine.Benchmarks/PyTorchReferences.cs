using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.BenchCompare;

namespace Engine.Benchmarks;

/// <summary>
/// Runs the committed PyTorch scripts (<c>benchmarks/pytorch/*.py</c>) on the shapes the suites use
/// and writes one <see cref="PyTorchReference"/> per line, naming the engine benchmark each one sits
/// beside: GEMM GFLOPS per size and variant, train-step tokens/s and decode tokens/s per preset
/// (<see cref="Presets.Selected"/>). The comparison tool turns them into engine/PyTorch ratios.
/// </summary>
/// <remarks>
/// Usage: <c>pytorch --out FILE [--scripts DIR] [--quick]</c>. The interpreter is <c>$PYTHON</c>
/// (default <c>/usr/bin/python3</c>), run with <c>OMP_WAIT_POLICY=PASSIVE</c> so PyTorch's two thread
/// pools do not fight over the cores. When <c>import torch</c> fails the references are skipped with
/// a message (exit code 0); a script that fails skips its own lines only.
/// </remarks>
internal static class PyTorchReferences
{
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(20);

    public static int Run(string[] args)
    {
        string? output = null;
        string scripts = Path.Combine("benchmarks", "pytorch");
        bool quick = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--out" when i + 1 < args.Length:
                    output = args[++i];
                    break;
                case "--scripts" when i + 1 < args.Length:
                    scripts = args[++i];
                    break;
                case "--quick":
                    quick = true;
                    break;
                default:
                    Console.Error.WriteLine($"pytorch: unknown or incomplete option {args[i]}; usage: pytorch --out FILE [--scripts DIR] [--quick]");
                    return 2;
            }
        }

        if (output is null)
        {
            Console.Error.WriteLine("pytorch: --out FILE is required");
            return 2;
        }

        string python = Environment.GetEnvironmentVariable("PYTHON") is { Length: > 0 } p ? p : "/usr/bin/python3";
        if (Python(python, ["-c", "import torch"], out _) is not { } check || check != 0)
        {
            Console.WriteLine($"PyTorch is not importable by {python}: skipping the side-by-side references");
            return 0;
        }

        var references = new List<PyTorchReference>();
        references.AddRange(Gemm(python, scripts, quick));
        foreach (string preset in Presets.Selected)
        {
            references.AddRange(TrainStep(python, scripts, preset, quick));
            references.AddRange(Decode(python, scripts, preset));
        }

        File.WriteAllLines(output, references.Select(r => JsonSerializer.Serialize(r, PyTorchReference.Json)));
        Console.WriteLine($"{references.Count} PyTorch references written to {output}");
        return 0;
    }

    private static IEnumerable<PyTorchReference> Gemm(string python, string scripts, bool quick)
    {
        string[] args =
        [
            Path.Combine(scripts, "bench_gemm.py"), "--json", "--threads", Threads, "--min-time", quick ? "0.3" : "1.0",
            "--sizes", .. GemmBenchmarks.Sizes.Select(Inv), "--variants", .. GemmBenchmarks.Variants,
        ];
        foreach (JsonObject line in JsonLines(python, args))
        {
            int n = (int)line["n"]!;
            string variant = (string)line["variant"]!;
            yield return new PyTorchReference($"GEMM {variant} n={n}", nameof(GemmBenchmarks), nameof(GemmBenchmarks.Gemm),
                new Dictionary<string, string> { ["N"] = Inv(n), ["Variant"] = variant, ["Device"] = "cpu" },
                "GFLOPS", 2.0 * n * n * n, 1e9, (double)line["gflops"]!);
        }
    }

    private static IEnumerable<PyTorchReference> TrainStep(string python, string scripts, string preset, bool quick)
    {
        var (batch, seq) = Presets.TrainShape(preset);
        string[] args =
        [
            Path.Combine(scripts, "bench_train.py"), .. Presets.Flags(preset).Split(' '), "--seq", Inv(seq), "--batch", Inv(batch),
            "--steps", quick ? "3" : "10", "--warmup", quick ? "1" : "2", "--threads", Threads,
        ];
        return JsonLines(python, args).Take(1).Select(line => new PyTorchReference($"train step {preset}", nameof(TrainStepBenchmarks),
            nameof(TrainStepBenchmarks.TrainStep), new Dictionary<string, string> { ["Preset"] = preset, ["Device"] = "cpu" },
            "tokens/s", Presets.TrainTokens(preset), 1, (double)line["tokens_per_s"]!));
    }

    private static IEnumerable<PyTorchReference> Decode(string python, string scripts, string preset)
    {
        string[] args =
        [
            Path.Combine(scripts, "bench_decode.py"), .. Presets.Flags(preset).Split(' '), "--batch", Inv(DecodeBenchmarks.Batch),
            "--prompt-len", Inv(DecodeBenchmarks.PromptLength), "--new-tokens", Inv(DecodeBenchmarks.NewTokens),
        ];
        // The engine's decode suite times the whole call, prefill included: tokens_per_s measures the same
        // (a script reporting only decode_tokens_per_s, the decode steps alone, is used as it is).
        return JsonLines(python, args).Take(1).Select(line => new PyTorchReference($"decode {preset}", nameof(DecodeBenchmarks),
            nameof(DecodeBenchmarks.Generate), new Dictionary<string, string> { ["Preset"] = preset },
            "tokens/s", DecodeBenchmarks.TokensPerRun, 1, (double)(line["tokens_per_s"] ?? line["decode_tokens_per_s"])!));
    }

    private static string Threads => Inv(Environment.ProcessorCount);

    private static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>The JSON objects a script prints, one per line (other lines are echoed); none when it fails.</summary>
    private static List<JsonObject> JsonLines(string python, string[] args)
    {
        Console.WriteLine($"OMP_WAIT_POLICY=PASSIVE {python} {string.Join(' ', args)}");
        int? exit = Python(python, args, out string stdout);
        var lines = new List<JsonObject>();
        foreach (string line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            Console.WriteLine("  " + line);
            if (line.StartsWith('{') && JsonNode.Parse(line) is JsonObject o)
            {
                lines.Add(o);
            }
        }

        if (exit != 0)
        {
            Console.WriteLine($"  warning: {Path.GetFileName(args[0])} failed (exit {exit?.ToString(CultureInfo.InvariantCulture) ?? "timeout"}); its references are skipped");
            return [];
        }

        return lines;
    }

    /// <summary>Runs the interpreter; the exit code, or null when it could not start or timed out.</summary>
    private static int? Python(string python, string[] args, out string stdout)
    {
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        stdout = "";
        try
        {
            using Process process = Process.Start(start)!;
            Task<string> output = process.StandardOutput.ReadToEndAsync();
            Task<string> error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(ScriptTimeout))
            {
                process.Kill(entireProcessTree: true);
                return null;
            }

            stdout = output.Result;
            string stderr = error.Result.Trim();
            if (process.ExitCode != 0 && stderr.Length > 0)
            {
                Console.WriteLine("  " + stderr.Replace("\n", "\n  ", StringComparison.Ordinal));
            }

            return process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Console.WriteLine($"  cannot run {python}: {e.Message}");
            return null;
        }
    }
}
