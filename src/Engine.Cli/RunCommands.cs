using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Config;
using Engine.Core;
using Engine.Distributed;
using Spectre.Console;

namespace Engine.Cli;

/// <summary><c>engine demo</c>, <c>engine sft</c> and <c>engine rl</c>: training runs with a run folder, report and progress bars.</summary>
internal static class RunCommands
{
    public static Command Demo()
    {
        var command = new Command("demo", "The main job: trains a small policy from scratch by SFT on a built-in task, then improves it with DAPO; prints test accuracy before and after RL and the report's path.");
        var common = new CommonRunOptions(command, "runs/demo");
        command.SetAction(r => CommandLine.Guard(() => common.Run(r, Engine.DemoDefaults.Options())));
        return command;
    }

    public static Command Sft()
    {
        var command = new Command("sft", "Supervised fine-tuning on a built-in task or your dataset (--data FILE, --model DIR): warm-starts a policy or trains a teacher.");
        var common = new CommonRunOptions(command, "runs/sft");
        var user = new UserDataFlags(command);
        var flags = SettingFlags.Add<SftOptions>(command);
        var modelFlags = SettingFlags.Add<ModelOptions>(command, "model-");
        var taskFlags = SettingFlags.Add<TaskOptions>(command, "task-");
        var mix = new MixFlags(command);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            // Your own data starts from the general defaults, not the demo's budget and model shape.
            RunOptions o = user.HasData(r) ? new RunOptions { Rl = null } : Engine.DemoDefaults.Options() with { Rl = null };
            return common.Run(r, o, x => user.Checked(r, modelFlags, user.Apply(r, x with
            {
                Sft = OptionsBinder.Apply(x.Sft ?? new SftOptions(), flags.Collect(r), "command line"),
                Model = OptionsBinder.Apply(x.Model, modelFlags.Collect(r), "command line"),
                Task = OptionsBinder.Apply(x.Task, taskFlags.Collect(r), "command line"),
                Mix = mix.Apply(x.Mix, r),
            })));
        }));
        return command;
    }

    public static Command Rl()
    {
        var command = new Command("rl", "Reinforcement learning (GRPO, DAPO or KDRL) on a built-in task or your dataset (--data FILE --reward R) from a checkpoint (--model DIR) or a new model.");
        var common = new CommonRunOptions(command, "runs/rl");
        var user = new UserDataFlags(command);
        var algo = new Option<string>("--algo") { Description = "grpo, dapo, ladder-0 .. ladder-5 (the DAPO paper's ablation ladder: 0 = grpo, 5 = dapo), kdrl (GRPO + distillation to --teacher), kd (distillation only, reward ignored) or dapo-mixed (DAPO with the samples of the guiding policy --guide): the preset the other settings start from", DefaultValueFactory = _ => "dapo" };
        var teacher = new Option<string?>("--teacher") { Description = "the teacher checkpoint of kdrl / kd (same as --kd-teacher)" };
        var guide = new Option<string?>("--guide") { Description = "the guiding policy's checkpoint of dapo-mixed" };
        command.Options.Add(algo);
        command.Options.Add(teacher);
        command.Options.Add(guide);
        var flags = SettingFlags.Add<RlOptions>(command, exclude: ["algorithm"]);
        var kdFlags = SettingFlags.Add<KdOptions>(command, "kd-");
        var guideFlags = SettingFlags.Add<GuideOptions>(command, "guide-", exclude: ["guide"]);
        var modelFlags = SettingFlags.Add<ModelOptions>(command, "model-");
        var taskFlags = SettingFlags.Add<TaskOptions>(command, "task-");
        command.SetAction(r => CommandLine.Guard(() =>
        {
            // The preset decides the techniques; the budget and evaluation are the demo's, so that
            // `rl --algo X` from the demo's SFT checkpoint is the demo's RL phase with X's techniques.
            string algorithm = r.GetValue(algo)!;
            bool data = user.HasData(r);
            string? note = !data && (taskFlags.NameOption is not { } nameFlag || r.GetValue(nameFlag) is null) && !common.HasConfigOrResume(r)
                ? "rl: no --data or --task-name given: training on the demo's task (addition) with the demo's RL budget"
                : null;

            RlOptions preset;
            try
            {
                // Your own data starts from the general defaults; the built-in tasks from the demo's budget.
                preset = (data ? new RlOptions() : Engine.DemoDefaults.Options().Rl!).WithPresetOf(algorithm);
            }
            catch (EngineException e) when (e.Message.StartsWith("algorithm must be", StringComparison.Ordinal))
            {
                throw new EngineException($"--algo must be {RlOptions.PresetNames}, got '{algorithm}'");
            }

            RunOptions o = data ? new RunOptions { Sft = null, Rl = preset } : Engine.DemoDefaults.Options() with { Sft = null, Rl = preset };
            return common.Run(r, o, x => user.Checked(r, modelFlags, user.Apply(r, x with
            {
                Rl = WithGuidance(WithDistillation(OptionsBinder.Apply(x.Rl!, flags.Collect(r), "command line"), kdFlags.Collect(r), r.GetValue(teacher)),
                    guideFlags.Collect(r), r.GetValue(guide)),
                Model = OptionsBinder.Apply(x.Model, modelFlags.Collect(r), "command line"),
                Task = OptionsBinder.Apply(x.Task, taskFlags.Collect(r), "command line"),
            })), note);
        }));
        return command;
    }

    /// <summary>The kd flags and --teacher applied to the RL options (which then distil, whatever the preset).</summary>
    private static RlOptions WithDistillation(RlOptions rl, JsonObject kdFlags, string? teacher)
    {
        if (teacher is not null)
        {
            kdFlags["teacher"] = teacher;
        }

        return kdFlags.Count == 0 ? rl : rl with { Distillation = OptionsBinder.Apply(rl.Distillation ?? new KdOptions(), kdFlags, "command line") };
    }

    /// <summary>The guide flags and --guide applied to the RL options (which then take guidance, whatever the preset).</summary>
    private static RlOptions WithGuidance(RlOptions rl, JsonObject guideFlags, string? guide)
    {
        if (guide is not null)
        {
            guideFlags["guide"] = guide;
        }

        return guideFlags.Count == 0 ? rl : rl with { Guidance = OptionsBinder.Apply(rl.Guidance ?? new GuideOptions(), guideFlags, "command line") };
    }

    /// <summary>--out, --config, --device, --resume and --set, shared by the run commands.</summary>
    private sealed class CommonRunOptions
    {
        private readonly Option<string> output;
        private readonly Option<string?> config = new("--config") { Description = "JSON config file with sections task, model, sft, rl and the key device" };
        private readonly Option<string?> device = new("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto" };
        private readonly Option<bool> resume = new("--resume") { Description = "continue the run in --out from its last checkpoint" };
        private readonly Option<string> distributed = new("--distributed")
        {
            Description = "none, or mpi: this process is one rank of a data-parallel run started by mpiexec (every rank gets the same arguments; rank 0 writes the run folder)",
            DefaultValueFactory = _ => "none",
        };

        private readonly Option<string[]> set = new("--set") { Description = "override any setting: section.key=value (e.g. rl.eps_high=0.28)", AllowMultipleArgumentsPerToken = true };

        public CommonRunOptions(Command command, string defaultOut)
        {
            output = new Option<string>("--out") { Description = "run folder", DefaultValueFactory = _ => defaultOut };
            command.Options.Add(output);
            command.Options.Add(config);
            command.Options.Add(device);
            command.Options.Add(resume);
            command.Options.Add(set);
            command.Options.Add(distributed);
        }

        /// <summary>True when --config or --resume is given (the task then comes from a file).</summary>
        public bool HasConfigOrResume(ParseResult r) => r.GetValue(config) is not null || r.GetValue(resume);

        /// <summary>Runs with the defaults, the config file, the flags and --set applied; <paramref name="note"/> is printed once the settings are valid.</summary>
        public int Run(ParseResult r, RunOptions defaults, Func<RunOptions, RunOptions>? flags = null, string? note = null)
        {
            RunOptions options = defaults;
            if (r.GetValue(config) is string file)
            {
                options = RunOptions.FromFile(file, options);
            }

            if (flags is not null)
            {
                options = flags(options);
            }

            options = ApplySets(options, r.GetValue(set) ?? []);
            if (r.GetValue(resume) && (r.GetValue(config) is not null || options.ToJsonString() != defaults.ToJsonString()))
            {
                // A resumed run continues with its saved config.json; other settings would silently not apply.
                throw new EngineException("--resume continues the run with its saved config.json: drop the other settings (--device may change), or start a new run with another --out");
            }

            if (r.GetValue(device) is string d)
            {
                options = options with { Device = d };
            }

            options.Validate();
            if (note is not null)
            {
                Console.WriteLine(note);
            }

            string outDir = r.GetValue(output)!;
            DistributedMode mode = r.GetValue(distributed) switch
            {
                "none" => DistributedMode.None,
                "mpi" => DistributedMode.Mpi,
                var other => throw new EngineException($"--distributed must be none or mpi, got '{other}'"),
            };
            RunResult result = RunWithProgress(options, outDir, r.GetValue(resume), mode);
            if (result.Rank != 0)
            {
                return 0; // rank 0 reports
            }

            if (result.AccuracyBeforeRl is double before && result.AccuracyAfterRl is double after)
            {
                string metric = options.Rl is { EvalSamples: > 0 } rl ? $"avg@{rl.EvalSamples}, temperature {rl.Temperature:G3}" : "greedy";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy before RL: {before:P1} ({metric}); greedy {result.GreedyAccuracyBeforeRl:P1}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy after RL:  {after:P1} ({metric}); greedy {result.GreedyAccuracyAfterRl:P1}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gain: {100 * (after - before):+0.0;-0.0} points"));
                if (result.PassAtKBeforeRl is double passBefore && result.PassAtKAfterRl is double passAfter)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pass@{options.Rl!.EvalSamples}: {passBefore:P1} before RL, {passAfter:P1} after"));
                }
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wall time: {result.WallSeconds:F1} s"));
            Console.WriteLine($"report: {result.ReportPath}");
            return 0;
        }

        private static RunOptions ApplySets(RunOptions options, IEnumerable<string> sets)
        {
            var patch = new JsonObject();
            foreach (string item in sets)
            {
                int eq = item.IndexOf('=', StringComparison.Ordinal);
                int dot = item.IndexOf('.', StringComparison.Ordinal);
                if (eq < 0)
                {
                    throw new EngineException($"--set {item}: expected section.key=value");
                }

                string key = item[..eq].Trim(), value = item[(eq + 1)..].Trim();
                if (key == "device")
                {
                    options = options with { Device = value };
                    continue;
                }

                if (dot < 0 || dot > eq)
                {
                    throw new EngineException($"--set {item}: expected section.key=value (sections: task, model, sft, rl, kd, guide)");
                }

                string section = key[..dot], name = key[(dot + 1)..];
                Type type = section switch
                {
                    "task" => typeof(TaskOptions),
                    "model" => typeof(ModelOptions),
                    "sft" => typeof(SftOptions),
                    "rl" => typeof(RlOptions),
                    "kd" => typeof(KdOptions),
                    "guide" => typeof(GuideOptions),
                    _ => throw new EngineException($"--set {item}: unknown section '{section}' (expected task, model, sft, rl, kd, guide)"),
                };
                var setting = OptionsBinder.Settings(type).FirstOrDefault(s => s.Name == name);
                JsonNode? parsed = setting.Property is null ? JsonValue.Create(value) : OptionsBinder.ParseValue(value, setting.Property.PropertyType, $"--set {key}");
                var sectionPatch = patch[section] as JsonObject ?? new JsonObject();
                sectionPatch[name] = parsed;
                patch[section] = sectionPatch;
            }

            if (patch.Count == 0)
            {
                return options;
            }

            options = options.WithJson(patch, "--set");
            // Like the shape flags, a --set model.X that shapes a new model would silently not apply to a checkpoint.
            ModelOptions.RefuseShapeWithCheckpoint(options.Model, patch["model"] as JsonObject ?? [], "--set");
            return options;
        }

        private static RunResult RunWithProgress(RunOptions options, string outDir, bool resume, DistributedMode mode)
        {
            if (mode != DistributedMode.None || Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
            {
                var plain = new Progress<RunProgress>(p =>
                {
                    if (p.Step == p.TotalSteps || p.Step % Math.Max(1, p.TotalSteps / 10) == 0 || p.Phase == "eval")
                    {
                        Console.Error.WriteLine($"[{p.Phase} {p.Step}/{p.TotalSteps}] {p.Status}");
                    }
                });
                return TrainingRun.Execute(options, outDir, resume, new SynchronousProgress(plain), mode);
            }

            RunResult? result = null;
            AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn()).Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var reporter = new SynchronousProgress(new Progress<RunProgress>(), p =>
                {
                    if (p.Phase == "eval")
                    {
                        return;
                    }

                    if (!tasks.TryGetValue(p.Phase, out ProgressTask? task))
                    {
                        task = ctx.AddTask(p.Phase.ToUpperInvariant(), maxValue: p.TotalSteps);
                        tasks[p.Phase] = task;
                    }

                    task.Value = p.Step;
                    task.Description = $"{p.Phase.ToUpperInvariant()} {Markup.Escape(p.Status)}";
                });
                result = TrainingRun.Execute(options, outDir, resume, reporter);
            });
            return result!;
        }
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SynchronousProgress(IProgress<RunProgress> inner, Action<RunProgress>? action = null) : IProgress<RunProgress>
    {
        public void Report(RunProgress value)
        {
            if (action is not null)
            {
                action(value);
            }
            else if (inner is Progress<RunProgress> p)
            {
                ((IProgress<RunProgress>)p).Report(value);
            }
        }
    }
}

/// <summary>Multi-task SFT flags: <c>--task</c> (repeated), <c>--mix FILE</c>, <c>--mixer</c> and the <c>--mix-*</c> settings.</summary>
internal sealed class MixFlags
{
    private readonly Option<string[]> tasks = new("--task") { Description = "a task of a multi-task mixture (repeat for each): name[:key=value,...], a .jsonl/.parquet file, optionally label=..." };
    private readonly Option<string?> file = new("--mix") { Description = "a file listing the tasks of a multi-task mixture, one per line (as --task)" };
    private readonly Option<string?> mixer = new("--mixer") { Description = "uniform, pike or balanced-pike (multi-task SFT; default pike)" };
    private readonly SettingFlags settings;

    public MixFlags(Command command)
    {
        command.Options.Add(tasks);
        command.Options.Add(file);
        command.Options.Add(mixer);
        settings = SettingFlags.Add<MixOptions>(command, "mix-", exclude: ["tasks", "mixer"]);
    }

    /// <summary>The mix settings with the flags applied; null when no flag asks for a mixture.</summary>
    public MixOptions? Apply(MixOptions? current, ParseResult r)
    {
        string[] named = r.GetValue(tasks) ?? [];
        string? path = r.GetValue(file);
        JsonObject values = settings.Collect(r);
        if (named.Length > 0 && path is not null)
        {
            throw new EngineException("give the mixture's tasks with --task or with --mix FILE, not both");
        }

        if (named.Length == 0 && path is null && r.GetValue(mixer) is null && values.Count == 0)
        {
            return current;
        }

        IReadOnlyList<string> specs = path is not null ? Engine.Pike.MixedTask.ReadSpecs(path) : named;
        if (specs.Count > 0)
        {
            values["tasks"] = string.Join(';', specs);
        }

        if (r.GetValue(mixer) is string m)
        {
            values["mixer"] = m;
        }

        MixOptions result = OptionsBinder.Apply(current ?? new MixOptions(), values, "command line");
        if (result.Tasks.Length == 0)
        {
            throw new EngineException("--mixer and --mix-* need the mixture's tasks: --task A --task B ... or --mix FILE");
        }

        return result;
    }
}

/// <summary>One command-line flag per setting of an options record.</summary>
internal sealed class SettingFlags
{
    private readonly List<(string Name, Type Type, Option<string?> Option)> flags = [];

    public static SettingFlags Add<T>(Command command, string prefix = "", IReadOnlyCollection<string>? exclude = null)
    {
        var result = new SettingFlags();
        foreach (var (name, flag, property) in OptionsBinder.Settings(typeof(T)))
        {
            if (exclude?.Contains(name) == true)
            {
                continue;
            }

            var option = new Option<string?>("--" + prefix + flag[2..]) { Description = $"{typeof(T).Name}.{property.Name} ({name})" };
            command.Options.Add(option);
            result.flags.Add((name, property.PropertyType, option));
        }

        return result;
    }

    /// <summary>The flag of the setting "name", if the record has one.</summary>
    public Option<string?>? NameOption => flags.Find(f => f.Name == "name").Option;

    public JsonObject Collect(ParseResult r)
    {
        var o = new JsonObject();
        foreach (var (name, type, option) in flags)
        {
            if (r.GetValue(option) is string value)
            {
                o[name] = OptionsBinder.ParseValue(value, type, option.Name);
            }
        }

        return o;
    }
}
