using System.CommandLine;
using Engine.MixedPolicy;

namespace Engine.Cli.Experiments;

/// <summary><c>engine experiment mixed-policy</c>: DAPO vs DAPO + guidance vs + zero-reward reuse on addition, at equal sampled tokens and equal steps.</summary>
internal static class MixedPolicyExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("mixed-policy", "DAPO vs DAPO + a guide's samples vs + zero-reward reuse on addition (a weak SFT policy, a strong SFT guide), at an equal budget of sampled tokens and at equal steps; writes summary.json and report.html.");
        var shared = new ExperimentArgs(command, "runs/experiment-mixed-policy");
        var steps = new Option<int?>("--steps") { Description = "RL steps per arm (default 100; --quick 4)" };
        var weight = new Option<string>("--weight") { Description = "the guided arms' off-policy weighting: clip or shaping", DefaultValueFactory = _ => "clip" };
        command.Options.Add(steps);
        command.Options.Add(weight);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            var options = new MixedPolicyExperimentOptions
            {
                Seeds = shared.Seeds(r), OutDir = shared.Out(r), Quick = shared.Quick(r), Device = shared.Device(r), Steps = r.GetValue(steps),
                Weight = Config.OptionsBinder.ParseEnum<Core.OffPolicyWeighting>(r.GetValue(weight)!, "--weight"),
            };
            var summary = MixedPolicyExperiment.Run(options, Console.WriteLine);
            Console.WriteLine($"wall time: {summary["wall_seconds"]} s");
            Console.WriteLine($"summary: {Path.Combine(options.OutDir, "summary.json")}");
            Console.WriteLine($"report: {Path.Combine(options.OutDir, "report.html")}");
            return 0;
        }));
        return command;
    }
}
