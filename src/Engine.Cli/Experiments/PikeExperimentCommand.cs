using System.CommandLine;
using System.Globalization;
using Engine.Pike;

namespace Engine.Cli.Experiments;

/// <summary><c>engine experiment pike</c>: uniform mixing vs PiKE vs Balanced-PiKE on four built-in tasks.</summary>
internal static class PikeExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("pike", "Uniform mixing vs PiKE vs Balanced-PiKE: multi-task SFT from scratch on four tasks (an easy one, a label-noisy one); per-task test accuracy, average and worst task; writes summary.json and report.html.");
        var shared = new ExperimentArgs(command, "runs/experiment-pike");
        var steps = new Option<int?>("--steps") { Description = "SFT steps per arm (default 1500; --quick 12)" };
        var arms = new Option<string?>("--arms") { Description = "comma-separated arms to run: uniform, pike, balanced_pike (default all)" };
        command.Options.Add(steps);
        command.Options.Add(arms);
        var mixFlags = SettingFlags.Add<MixOptions>(command, "mix-", exclude: ["tasks", "mixer"]);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            var options = new PikeExperimentOptions
            {
                Seeds = shared.Seeds(r), OutDir = shared.Out(r), Quick = shared.Quick(r), Device = shared.Device(r), Steps = r.GetValue(steps),
                Mix = Config.OptionsBinder.Apply(PikeExperiment.DefaultMix, mixFlags.Collect(r), "command line"),
                Arms = r.GetValue(arms)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            };
            var summary = PikeExperiment.Run(options, Console.WriteLine);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wall time: {summary["wall_seconds"]} s"));
            Console.WriteLine($"summary: {Path.Combine(options.OutDir, "summary.json")}");
            Console.WriteLine($"report: {Path.Combine(options.OutDir, "report.html")}");
            return 0;
        }));
        return command;
    }
}
