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
        var size = new Option<int?>("--size") { Description = "synthetic set size (default 200; 20 with --quick)" };
        var steps = new Option<int?>("--distill-steps") { Description = "outer distillation steps (default 400; 10 with --quick)" };
        var lr = new Option<float?>("--distill-lr") { Description = "SGD step size on the states (default 0.1)" };
        var loss = new Option<string?>("--loss") { Description = "BC loss of every arm and of the matching: mse (default), mae or ce" };
        var temperature = new Option<float?>("--temperature")
        {
            Description = "evaluate every arm by sampling from softmax(logits / T), keyed by the seed; 0 = greedy (default: 1 on maze, greedy on bigfish)",
        };
        var noise = new Option<double?>("--max-noise") { Description = "largest per-episode noise of the teacher, in [0, 1] (default 0.8)" };
        command.Options.Add(noise);
        command.Options.Add(env);
        command.Options.Add(temperature);
        command.Options.Add(size);
        command.Options.Add(steps);
        command.Options.Add(lr);
        command.Options.Add(loss);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            ulong[] seeds = args.Seeds(r);
            OfflineDistillSettings settings = (args.Quick(r) ? OfflineDistillSettings.Quick() : new OfflineDistillSettings()) with { Environment = r.GetValue(env)! };
            OfflineEnvironments.Create(settings.Environment);
            if (r.GetValue(noise) is double maxNoise)
            {
                settings = settings with { MaxNoise = maxNoise };
            }

            if (r.GetValue(temperature) is float t)
            {
                settings = settings with { Evaluation = ActionSelection.Create(t, 0) };
            }

            if (r.GetValue(size) is int n)
            {
                settings = settings with { SyntheticSize = n };
            }

            if (r.GetValue(steps) is int k)
            {
                settings = settings with { Distill = settings.Distill with { OuterSteps = k } };
            }

            if (r.GetValue(lr) is float rate)
            {
                settings = settings with { Distill = settings.Distill with { LearningRate = rate } };
            }

            if (r.GetValue(loss) is string lossName)
            {
                BcLoss l = BcLossHead.Parse(lossName);
                settings = settings with
                {
                    Bc = settings.Bc with { Loss = l }, SmallSetBc = settings.SmallSetBc with { Loss = l }, Distill = settings.Distill with { Loss = l },
                };
            }
            using Accelerator acc = Backends.Registry.Open(args.Device(r));
            var summary = OfflineDistillExperiment.Run(acc, settings, seeds, args.Out(r), line => Console.Error.WriteLine(line));
            Console.WriteLine(summary.ToJsonString());
            Console.Error.WriteLine($"wrote {Path.Combine(args.Out(r), "summary.json")} and report.html");
            return 0;
        }));
        return command;
    }
}
