using System.CommandLine;
using Engine.Core;
using Engine.OfflineRl;

namespace Engine.Cli.Experiments;

/// <summary>
/// <c>engine experiment offline-distill</c>: dataset distillation for offline RL (arXiv:2407.20299): full BC vs
/// percentile BC vs a random real subset vs the distilled set (frozen and live matching), on training and unseen levels.
/// </summary>
internal static class OfflineDistillCommand
{
    public static Command Create()
    {
        var command = new Command("offline-distill",
            "Dataset distillation for offline RL: full BC, percentile BC, a random real subset and the distilled set (frozen and live matching) on training and unseen levels.");
        var args = new ExperimentArgs(command, "runs/offline-distill");
        var env = new Option<string>("--env") { Description = "environment: bigfish or maze", DefaultValueFactory = _ => "bigfish" };
        command.Options.Add(env);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            ulong[] seeds = args.Seeds(r);
            OfflineDistillSettings settings = (args.Quick(r) ? OfflineDistillSettings.Quick() : new OfflineDistillSettings()) with { Environment = r.GetValue(env)! };
            OfflineEnvironments.Create(settings.Environment);
            using Accelerator acc = Backends.Registry.Open(args.Device(r));
            var summary = OfflineDistillExperiment.Run(acc, settings, seeds, args.Out(r), line => Console.Error.WriteLine(line));
            Console.WriteLine(summary.ToJsonString());
            Console.Error.WriteLine($"wrote {Path.Combine(args.Out(r), "summary.json")} and report.html");
            return 0;
        }));
        return command;
    }
}
