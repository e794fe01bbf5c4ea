using System.CommandLine;
using System.Globalization;
using Engine.Core;

namespace Engine.Cli.Experiments;

/// <summary>The flags every <c>engine experiment</c> subcommand shares: <c>--seeds</c>, <c>--out</c>, <c>--quick</c>, <c>--device</c>.</summary>
internal sealed class ExperimentArgs
{
    private readonly Option<string> seeds = new("--seeds") { Description = "comma-separated seeds, one full repetition each", DefaultValueFactory = _ => "1,2,3" };
    private readonly Option<string> outDir;
    private readonly Option<bool> quick = new("--quick") { Description = "a reduced run for CI smoke tests (same arms, fewer steps and examples)" };
    private readonly Option<string?> device = new("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto" };

    /// <summary>Adds the shared flags to <paramref name="command"/>; <paramref name="defaultOut"/> is the run folder when --out is absent.</summary>
    public ExperimentArgs(Command command, string defaultOut)
    {
        outDir = new Option<string>("--out") { Description = "output folder (summary.json, report.html)", DefaultValueFactory = _ => defaultOut };
        command.Options.Add(seeds);
        command.Options.Add(outDir);
        command.Options.Add(quick);
        command.Options.Add(device);
    }

    /// <summary>The seeds, parsed; a bad list is a one-line error.</summary>
    public ulong[] Seeds(ParseResult r)
    {
        string text = r.GetValue(seeds) ?? "";
        var result = new List<ulong>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!ulong.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed))
            {
                throw new EngineException($"--seeds must be a comma-separated list of non-negative integers, got '{text}'");
            }

            if (result.Contains(seed))
            {
                throw new EngineException($"--seeds lists {seed} twice");
            }

            result.Add(seed);
        }

        return result.Count > 0 ? [.. result] : throw new EngineException("--seeds must name at least one seed");
    }

    /// <summary>The output folder.</summary>
    public string Out(ParseResult r) => r.GetValue(outDir)!;

    /// <summary>True for the reduced CI version.</summary>
    public bool Quick(ParseResult r) => r.GetValue(quick);

    /// <summary>The device flag (null: the default device).</summary>
    public string? Device(ParseResult r) => r.GetValue(device);
}
