using System.CommandLine;
using System.Globalization;
using Engine.Core;
using Engine.OfflineRl;

namespace Engine.Cli;

/// <summary>
/// <c>engine offline collect | bc | distill | eval</c>: the offline RL pieces one at a time, on the built-in
/// procedurally generated environments (bigfish, maze) and the dataset format of <see cref="OfflineDataset"/>.
/// </summary>
internal static class OfflineCommand
{
    public static Command Create()
    {
        var command = new Command("offline", "Offline RL on procedurally generated grid games: collect teacher data, behaviour cloning, dataset distillation, evaluation.");
        command.Subcommands.Add(Collect());
        command.Subcommands.Add(Bc());
        command.Subcommands.Add(Distill());
        command.Subcommands.Add(Eval());
        return command;
    }

    private static Option<string> Env() => new("--env") { Description = "environment: bigfish or maze", DefaultValueFactory = _ => "bigfish" };

    private static Option<int> Levels() => new("--levels") { Description = "number of levels (training levels are seeds 0..n-1)", DefaultValueFactory = _ => 200 };

    private static Option<string?> Device() => new("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto" };

    private static Option<ulong> Seed() => new("--seed") { Description = "random seed", DefaultValueFactory = _ => 1 };

    private static Option<string> Loss() => new("--loss") { Description = "BC loss on the softmax outputs: mse, mae or ce", DefaultValueFactory = _ => "mse" };

    private static Command Collect()
    {
        var env = Env();
        var levels = Levels();
        var episodes = new Option<int>("--episodes") { Description = "teacher episodes (cycling over the levels)", DefaultValueFactory = _ => 200 };
        var noise = new Option<double>("--max-noise") { Description = "largest per-episode probability of a random action", DefaultValueFactory = _ => 0.8 };
        var seed = Seed();
        var output = new Option<string>("--out") { Description = "dataset file to write (safetensors)", Required = true };
        var command = new Command("collect", "Run the noisy planner teacher on the training levels and write the offline dataset.") { env, levels, episodes, noise, seed, output };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            OfflineDataset data = Rollouts.Collect(r.GetValue(env)!, OfflineEnvironments.TrainingLevels(r.GetValue(levels)), r.GetValue(episodes),
                r.GetValue(noise), r.GetValue(seed));
            data.Save(r.GetValue(output)!);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"steps\": {data.Count}, \"episodes\": {data.EpisodeCount}, \"mean_return\": {data.EpisodeReturns.Average():F4}, \"min_return\": {data.EpisodeReturns.Min():F4}, \"max_return\": {data.EpisodeReturns.Max():F4}}}"));
            return 0;
        }));
        return command;
    }

    private static Command Bc()
    {
        var data = new Option<string>("--data") { Description = "dataset file (or a distilled set)", Required = true };
        var output = new Option<string>("--out") { Description = "policy file to write", Required = true };
        var percentile = new Option<double>("--percentile") { Description = "train on the top fraction of episodes by return (1 = all)", DefaultValueFactory = _ => 1.0 };
        var steps = new Option<int>("--steps") { Description = "Adam updates", DefaultValueFactory = _ => 1500 };
        var batch = new Option<int>("--batch") { Description = "rows per update", DefaultValueFactory = _ => 256 };
        var lr = new Option<float>("--lr") { Description = "Adam step size", DefaultValueFactory = _ => 1e-3f };
        var hidden = new Option<int>("--hidden") { Description = "MLP hidden width", DefaultValueFactory = _ => 128 };
        var loss = Loss();
        var seed = Seed();
        var device = Device();
        var command = new Command("bc", "Behaviour cloning (full data or percentile) of an MLP policy.") { data, output, percentile, steps, batch, lr, hidden, loss, seed, device };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            OfflineDataset d = OfflineDataset.Load(r.GetValue(data)!);
            int[] rows = r.GetValue(percentile) >= 1 ? Enumerable.Range(0, d.Count).ToArray() : d.TopEpisodeRows(r.GetValue(percentile));
            var options = new BcOptions { Steps = r.GetValue(steps), BatchSize = r.GetValue(batch), LearningRate = r.GetValue(lr), Loss = BcLossHead.Parse(r.GetValue(loss)!), Seed = r.GetValue(seed) };
            using Accelerator acc = Backends.Registry.Open(r.GetValue(device));
            using var policy = new MlpPolicy(acc, d.ObservationSize, r.GetValue(hidden), d.ActionCount, Math.Max(1, Math.Min(options.BatchSize, rows.Length)));
            policy.Initialize(r.GetValue(seed));
            float last = BehaviourCloning.Train(policy, d.Observations, d.Actions, rows, options);
            double accuracy = BehaviourCloning.Accuracy(policy, d.Observations, d.Actions, rows);
            policy.Save(r.GetValue(output)!, d.Environment);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"rows\": {rows.Length}, \"loss\": {last:G6}, \"accuracy\": {accuracy:F4}}}"));
            return 0;
        }));
        return command;
    }

    private static Command Distill()
    {
        var data = new Option<string>("--data") { Description = "dataset file", Required = true };
        var output = new Option<string>("--out") { Description = "distilled set to write (dataset format: one single-step episode per state)", Required = true };
        var mode = new Option<string>("--mode") { Description = "frozen (match --policy's gradients) or live (a student trained on the set every step)", DefaultValueFactory = _ => "frozen" };
        var policy = new Option<string?>("--policy") { Description = "frozen mode: the matching network (from 'engine offline bc')" };
        var size = new Option<int>("--size") { Description = "synthetic states in all (class-balanced)", DefaultValueFactory = _ => 50 };
        var steps = new Option<int>("--steps") { Description = "outer steps", DefaultValueFactory = _ => 200 };
        var lr = new Option<float>("--lr") { Description = "SGD step size on the states", DefaultValueFactory = _ => 0.1f };
        var momentum = new Option<float>("--momentum") { Description = "SGD momentum on the states", DefaultValueFactory = _ => 0.5f };
        var realBatch = new Option<int>("--real-batch") { Description = "real rows per class per step", DefaultValueFactory = _ => 256 };
        var hidden = new Option<int>("--hidden") { Description = "live mode: the student's hidden width", DefaultValueFactory = _ => 128 };
        var loss = Loss();
        var seed = Seed();
        var device = Device();
        var command = new Command("distill", "Distill the dataset into a small synthetic set by gradient matching.")
            { data, output, mode, policy, size, steps, lr, momentum, realBatch, hidden, loss, seed, device };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            OfflineDataset d = OfflineDataset.Load(r.GetValue(data)!);
            MatchingMode m = r.GetValue(mode) switch
            {
                "frozen" => MatchingMode.Frozen,
                "live" => MatchingMode.Live,
                var other => throw new EngineException($"--mode must be frozen or live, got '{other}'"),
            };
            if (m == MatchingMode.Frozen && r.GetValue(policy) is null)
            {
                throw new EngineException("--mode frozen needs --policy (a network from 'engine offline bc')");
            }

            var options = new DistillOptions
            {
                OuterSteps = r.GetValue(steps), LearningRate = r.GetValue(lr), Momentum = r.GetValue(momentum), RealBatch = r.GetValue(realBatch),
                Loss = BcLossHead.Parse(r.GetValue(loss)!), Seed = r.GetValue(seed),
            };
            SyntheticSet set = SyntheticSet.FromRealStates(d, r.GetValue(size), r.GetValue(seed));
            int maxBatch = Math.Max(set.Count, options.RealBatch);
            using Accelerator acc = Backends.Registry.Open(r.GetValue(device));
            MlpPolicy net;
            if (m == MatchingMode.Frozen)
            {
                (net, _) = MlpPolicy.Load(acc, r.GetValue(policy)!, maxBatch);
            }
            else
            {
                net = new MlpPolicy(acc, d.ObservationSize, r.GetValue(hidden), d.ActionCount, maxBatch);
                net.Initialize(r.GetValue(seed));
            }

            using (net)
            using (var distiller = new Distiller(d, set, net, m, options))
            {
                double[] distances = distiller.Run();
                set.ToDataset(d).Save(r.GetValue(output)!);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{{\"states\": {set.Count}, \"first_distance\": {(distances.Length > 0 ? distances[0] : 0):G6}, \"last_distance\": {(distances.Length > 0 ? distances[^1] : 0):G6}}}"));
            }

            return 0;
        }));
        return command;
    }

    private static Command Eval()
    {
        var policyFile = new Option<string>("--policy") { Description = "policy file", Required = true };
        var env = new Option<string?>("--env") { Description = "environment (default: the policy's)" };
        var levels = Levels();
        var unseen = new Option<bool>("--unseen") { Description = "evaluate on unseen levels instead of the training levels" };
        var temperature = new Option<float>("--temperature") { Description = "0: greedy actions (default); T > 0: actions sampled from softmax(logits / T)", DefaultValueFactory = _ => 0f };
        var seed = Seed();
        var device = Device();
        var command = new Command("eval", "Mean return of a policy, one episode per level (greedy or sampled).") { policyFile, env, levels, unseen, temperature, seed, device };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            using Accelerator acc = Backends.Registry.Open(r.GetValue(device));
            var (policy, policyEnv) = MlpPolicy.Load(acc, r.GetValue(policyFile)!, 256);
            using (policy)
            {
                string name = r.GetValue(env) ?? (policyEnv.Length > 0 ? policyEnv : throw new EngineException("the policy names no environment: pass --env"));
                int n = r.GetValue(levels);
                ulong[] set = r.GetValue(unseen) ? OfflineEnvironments.UnseenLevels(n) : OfflineEnvironments.TrainingLevels(n);
                ActionSelection evaluation = ActionSelection.Create(r.GetValue(temperature), r.GetValue(seed));
                double mean = Rollouts.MeanReturn(policy, name, set, evaluation);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"environment\": \"{name}\", \"levels\": {n}, \"unseen\": {(r.GetValue(unseen) ? "true" : "false")}, \"evaluation\": \"{evaluation}\", \"mean_return\": {mean:F4}}}"));
            }

            return 0;
        }));
        return command;
    }
}
