using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Engine.IO;
using Engine.Tests.Support;

namespace Engine.Tests.Distributed;

/// <summary>A fact that runs <c>mpiexec.mpich</c> on the built CLI (.ci/run installs MPICH).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class MpiFactAttribute() : NeedsFactAttribute(
    MpiRunTests.Mpiexec() is not null, "mpiexec.mpich not found on PATH (Debian: apt-get install mpich libmpich-dev)");

/// <summary>
/// Data-parallel runs under MPICH's mpiexec: 2 ranks against 1 process (SFT then RL, one config), run to run
/// bit-identity at 2 ranks, a configuration mismatch refused, a killed rank stopping the job.
/// </summary>
public sealed partial class MpiRunTests : IDisposable
{
    // A tiny SFT phase then a tiny RL phase (dynamic sampling on, so refill batches are exchanged too).
    private const string Config = """
        {
          "sft": { "steps": 2, "batch_size": 8, "eval_examples": 4, "eval_every": 0 },
          "rl": { "steps": 2, "prompts_per_step": 4, "samples_per_prompt": 4, "eval_examples": 4, "eval_every": 0, "eval_samples": 0,
                  "checkpoint_every": 0 }
        }
        """;

    // Fields that time the step: they differ between any two runs.
    private static readonly string[] Timings = ["tokens_per_second", "sampling_seconds", "training_seconds", "all_reduce_seconds", "all_reduce_wait_seconds"];

    // Fields decided by the sampled completions alone (identical completions give identical values).
    private static readonly string[] Sampled =
        ["reward_mean", "accuracy", "response_length", "groups_kept", "groups_generated", "generation_batches", "tokens_generated", "tokens_trained"];

    // Fields of this rank's own generation engine (rank 0's share of the sequences on 2 ranks).
    private static readonly string[] PerRank = ["peak_kv_bytes", "decode_steps", "length_prediction_correlation"];

    private readonly string root = Directory.CreateTempSubdirectory("engine-mpi-").FullName;

    /// <summary>mpiexec.mpich's path, or null when it is not on PATH.</summary>
    public static string? Mpiexec() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "mpiexec.mpich")).FirstOrDefault(File.Exists);

    [MpiFact]
    public void Two_ranks_match_one_process_and_repeat_bit_for_bit()
    {
        string config = Path.Combine(root, "config.json");
        File.WriteAllText(config, Config);
        string one = Path.Combine(root, "one"), twoA = Path.Combine(root, "two-a"), twoB = Path.Combine(root, "two-b");
        string args = $"rl --config {config} --device cpu";
        Run("dotnet", $"{ExternalProcess.BuiltCli()} {args} --out {one}");
        foreach (string two in new[] { twoA, twoB })
        {
            Run(RequireMpiexec(), $"-np 2 dotnet {ExternalProcess.BuiltCli()} {args} --out {two} --distributed mpi");
        }

        // For a fixed N the run repeats bit for bit: weights, optimizer moments and every metric but the timings.
        foreach (string file in CheckpointFiles(twoA))
        {
            string relative = Path.GetRelativePath(twoA, file);
            Assert.True(File.ReadAllBytes(file).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(twoB, relative))), $"{relative} differs between two 2-rank runs");
        }

        List<JsonObject> a = Metrics(twoA), b = Metrics(twoB), single = Metrics(one);
        Assert.Equal(4, a.Count); // rank 0 alone logged: 2 SFT + 2 RL lines
        Assert.Equal(a.Select(WithoutTimings), b.Select(WithoutTimings));

        // Against one process: the same completions (every sampled figure equal), losses and norms within float rounding.
        Assert.Equal(single.Count, a.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.True(a[i]["all_reduce_bytes"]!.GetValue<long>() > 0, "the 2-rank run reports the bytes it all-reduced");
            foreach (var (key, value) in single[i])
            {
                if (Timings.Contains(key) || PerRank.Contains(key) || value is null || value.GetValueKind() != System.Text.Json.JsonValueKind.Number)
                {
                    continue;
                }

                double x = value.GetValue<double>(), y = a[i][key]!.GetValue<double>();
                if (Sampled.Contains(key))
                {
                    Assert.True(x == y, $"line {i} {key}: {x} in one process, {y} on 2 ranks (the completions differ)");
                }
                else
                {
                    Assert.True(Math.Abs(x - y) <= 1e-4 * Math.Max(1, Math.Abs(x)), $"line {i} {key}: {x} in one process, {y} on 2 ranks");
                }
            }
        }

        float[] w1 = Weights(one), w2 = Weights(twoA);
        Assert.Equal(w1.Length, w2.Length);
        double largest = w1.Zip(w2, (x, y) => Math.Abs((double)x - y)).Max();
        Assert.True(largest <= 1e-4, $"the final weights differ by up to {largest} between 1 process and 2 ranks");
    }

    [MpiFact]
    public void A_rank_started_with_other_settings_is_refused_and_every_rank_stops_naming_it()
    {
        string cli = ExternalProcess.BuiltCli();
        string args = $"sft --out {Path.Combine(root, "mismatch")} --steps 2 --batch-size 8 --eval-examples 4 --device cpu --distributed mpi";
        // MPMD: rank 0 and rank 1 run the same command but for rank 1's learning rate.
        var (code, output) = Start(RequireMpiexec(), $"-np 1 dotnet {cli} {args} : -np 1 dotnet {cli} {args} --learning-rate 0.5", TimeSpan.FromSeconds(90));
        Assert.NotEqual(0, code);
        Assert.Contains("rank 1 of 2 started with settings or starting weights different from rank 0's", output, StringComparison.Ordinal);
        Assert.Contains("failed, stopping every rank", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(root, "mismatch", "metrics.jsonl")) && File.ReadAllText(Path.Combine(root, "mismatch", "metrics.jsonl")).Length > 0,
            "no step ran");
    }

    [MpiFact]
    public void A_killed_rank_stops_the_other_ranks()
    {
        string cli = ExternalProcess.BuiltCli();
        var info = Info(RequireMpiexec(),
            $"-np 2 dotnet {cli} sft --out {Path.Combine(root, "killed")} --steps 100000 --batch-size 8 --eval-examples 4 --set sft.eval_every=0 --device cpu --distributed mpi");
        using Process job = Process.Start(info)!;
        var output = new System.Text.StringBuilder();
        int? victim = null;
        var found = new ManualResetEventSlim();
        void Read(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (output)
            {
                output.AppendLine(line);
            }

            if (RankLine().Match(line) is { Success: true } m)
            {
                victim = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                found.Set();
            }
        }

        job.OutputDataReceived += (_, e) => Read(e.Data);
        job.ErrorDataReceived += (_, e) => Read(e.Data);
        job.BeginOutputReadLine();
        job.BeginErrorReadLine();
        try
        {
            Assert.True(found.Wait(TimeSpan.FromSeconds(60)), $"rank 1 never named its process:\n{output}");
            Thread.Sleep(1500); // into the training steps
            Process.GetProcessById(victim!.Value).Kill();
            Assert.True(job.WaitForExit(TimeSpan.FromSeconds(60)), $"the other rank did not stop within 60 s of rank 1's death:\n{output}");
            job.WaitForExit();
            Assert.True(job.ExitCode != 0, $"the job exited with 0 after rank 1 was killed:\n{output}");

            // Not asserted: which process mpiexec names in its report. It names the killed PID (which the rank's first line,
            // asserted above, maps to rank 1) in every run by hand, but the report is mpiexec's and races with rank 0's own
            // failure: on a loaded 2-core machine the test failed on that check once in 11 full test runs (and once more
            // that day on an assertion whose message was not kept; the messages above now carry the whole output).
        }
        finally
        {
            if (!job.HasExited)
            {
                job.Kill(entireProcessTree: true);
            }
        }
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    [GeneratedRegex(@"engine: rank 1 of 2 is process (\d+)")]
    private static partial Regex RankLine();

    private static string RequireMpiexec() =>
        Mpiexec() ?? throw new Xunit.Sdk.XunitException("mpiexec.mpich is missing: .ci/run installs MPICH (apt-get install mpich libmpich-dev)");

    private static ProcessStartInfo Info(string file, string arguments)
    {
        var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["ENGINE_CPU_THREADS"] = "1"; // one thread per rank: 2 ranks on 2 cores
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        return info;
    }

    private static (int Code, string Output) Start(string file, string arguments, TimeSpan limit)
    {
        using Process process = Process.Start(Info(file, arguments))!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {arguments} did not finish in {limit.TotalSeconds:F0} s (a hang):\n{stdout.Result}\n{stderr.Result}");
        }

        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static void Run(string file, string arguments)
    {
        var (code, output) = Start(file, arguments, TimeSpan.FromMinutes(3));
        Assert.True(code == 0, $"{file} {arguments} failed ({code}):\n{output}");
    }

    private static IEnumerable<string> CheckpointFiles(string run) =>
        Directory.EnumerateFiles(Path.Combine(run, "checkpoints"), "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal);

    private static List<JsonObject> Metrics(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();

    private static string WithoutTimings(JsonObject line)
    {
        var copy = line.DeepClone().AsObject();
        foreach (string key in Timings)
        {
            copy.Remove(key);
        }

        return copy.ToJsonString();
    }

    /// <summary>Every tensor of the run's final (RL) checkpoint's model, concatenated in name order.</summary>
    private static float[] Weights(string run)
    {
        using SafeTensorsFile file = SafeTensorsFile.Open(Path.Combine(run, "checkpoints", "rl-000002", "model", "model.safetensors"));
        return file.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).SelectMany(t => file.ReadAsFloat32(t.Name)).ToArray();
    }
}
