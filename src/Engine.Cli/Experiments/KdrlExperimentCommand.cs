using System.CommandLine;
using System.Globalization;
using Engine.Kdrl;

namespace Engine.Cli.Experiments;

/// <summary><c>engine experiment kdrl</c>: KDRL's five-row comparison (plus response masking) on the built-in addition task.</summary>
internal static class KdrlExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("kdrl", "KDRL vs GRPO vs KD only vs SFT on addition: a teacher trained longer by SFT, a student warm-started by a short SFT, equal RL steps per arm; writes summary.json and report.html.");
        var shared = new ExperimentArgs(command, "runs/experiment-kdrl");
        var beta = new Option<float>("--beta") { Description = "beta of the KDRL arms (the annealed arm starts here and falls to beta/10)", DefaultValueFactory = _ => 0.02f };
        var steps = new Option<int?>("--steps") { Description = "RL steps per arm (default 150; --quick 4)" };
        var studentSft = new Option<int?>("--student-sft-steps") { Description = "SFT steps of the student's warm start (default 300; --quick 10)" };
        command.Options.Add(beta);
        command.Options.Add(steps);
        command.Options.Add(studentSft);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            var options = new KdrlExperimentOptions
            {
                Seeds = shared.Seeds(r), OutDir = shared.Out(r), Quick = shared.Quick(r), Device = shared.Device(r), Beta = r.GetValue(beta),
                Steps = r.GetValue(steps), StudentSftSteps = r.GetValue(studentSft),
            };
            if (!(options.Beta >= 0) || float.IsInfinity(options.Beta))
            {
                throw new Core.EngineException($"--beta must be a finite number >= 0, got {options.Beta}");
            }

            var summary = KdrlExperiment.Run(options, Console.WriteLine);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wall time: {summary["wall_seconds"]} s"));
            Console.WriteLine($"summary: {Path.Combine(options.OutDir, "summary.json")}");
            Console.WriteLine($"report: {Path.Combine(options.OutDir, "report.html")}");
            return 0;
        }));
        return command;
    }
}
