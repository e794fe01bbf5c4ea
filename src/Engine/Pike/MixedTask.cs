using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Engine.Core;
using Engine.Data;
using Engine.Tasks;

namespace Engine.Pike;

/// <summary>
/// K tasks seen as one (for the tokenizer's alphabet, the response bound and a mixed evaluation): example i of a
/// split is example i / K of task i mod K, and each example is scored by the task it came from.
/// </summary>
internal sealed partial class MixedTask : ITask, ISeededTrainingOrder
{
    private const string SourceSeparator = "|";
    private readonly ConditionalWeakTable<TaskExample, ITask> origin = [];

    public MixedTask(IReadOnlyList<ITask> tasks, IReadOnlyList<string> labels)
    {
        if (tasks.Count < 2 || labels.Count != tasks.Count)
        {
            throw new EngineException($"a task mixture needs at least two tasks, each with a label (got {tasks.Count} tasks, {labels.Count} labels)");
        }

        if (labels.Distinct().Count() != labels.Count)
        {
            throw new EngineException($"mix: task labels must differ, got {string.Join(", ", labels)} (name them label=task)");
        }

        Tasks = tasks;
        Labels = labels;
        Alphabet = new string([.. tasks.SelectMany(t => t.Alphabet).Distinct().Order()]);
        MaxResponseLength = tasks.Max(t => t.MaxResponseLength);
    }

    /// <summary>The tasks, in order.</summary>
    public IReadOnlyList<ITask> Tasks { get; }

    /// <summary>Each task's label (metric names, reports): unique, letters, digits, '_' and '-'.</summary>
    public IReadOnlyList<string> Labels { get; }

    public string Name => "mix(" + string.Join(",", Labels) + ")";

    public string Alphabet { get; }

    public int MaxResponseLength { get; }

    /// <summary>Example <paramref name="index"/> of task <paramref name="task"/>, remembered for scoring.</summary>
    public TaskExample Example(int task, DataSplit split, long index) => Remember(task, Tasks[task].Example(split, index));

    /// <summary>Training example <paramref name="index"/> of task <paramref name="task"/> in the order of <paramref name="orderSeed"/>, remembered for scoring.</summary>
    public TaskExample TrainExample(int task, ulong orderSeed, long index) => Remember(task, TrainingOrder.Example(Tasks[task], orderSeed, index));

    public TaskExample Example(DataSplit split, long index) => Example((int)(index % Tasks.Count), split, index / Tasks.Count);

    public TaskExample TrainExample(ulong orderSeed, long index) => TrainExample((int)(index % Tasks.Count), orderSeed, index / Tasks.Count);

    private TaskExample Remember(int task, TaskExample e)
    {
        e = e with { Source = Labels[task] + SourceSeparator + e.Source }; // survives copies of the example (RL rollouts)
        origin.AddOrUpdate(e, Tasks[task]);
        return e;
    }

    public RewardResult Score(TaskExample example, string response)
    {
        if (origin.TryGetValue(example, out ITask? task))
        {
            return task.Score(example, response);
        }

        int cut = example.Source.IndexOf(SourceSeparator, StringComparison.Ordinal);
        int k = cut < 0 ? -1 : Labels.ToList().IndexOf(example.Source[..cut]);
        return k >= 0 ? Tasks[k].Score(example, response)
            : throw new EngineException($"mix: cannot score an example that did not come from the mixture (source '{example.Source}')");
    }

    /// <summary>
    /// The tasks of <paramref name="specs"/>: each <c>[label=]name[:key=value,...]</c> for a built-in task (the extra keys:
    /// <c>label_noise=p</c> corrupts that share of the training references, <c>marker=TEXT</c> prefixes every prompt) or <c>[label=]path</c> for a dataset
    /// file (.jsonl or .parquet). A bad spec, an unknown task or a missing or malformed file is a one-line error naming the task.
    /// </summary>
    public static MixedTask Parse(IReadOnlyList<string> specs, ulong seed)
    {
        var tasks = new List<ITask>();
        var labels = new List<string>();
        for (int i = 0; i < specs.Count; i++)
        {
            string spec = specs[i].Trim();
            try
            {
                var (label, task) = ParseOne(spec, seed);
                labels.Add(label);
                tasks.Add(task);
            }
            catch (EngineException e)
            {
                throw new EngineException($"mix: task {i + 1} '{spec}': {e.Message}");
            }
        }

        // Unlabelled tasks of the same name get their position as a suffix.
        for (int i = 0; i < labels.Count; i++)
        {
            if (labels.Count(l => l == labels[i]) > 1 && !specs[i].Contains('=', StringComparison.Ordinal))
            {
                labels[i] += "_" + (i + 1).ToString(CultureInfo.InvariantCulture);
            }
        }

        return new MixedTask(tasks, labels);
    }

    /// <summary>
    /// The task specs of a mix file: one per line (as in <see cref="Parse"/>); blank lines and lines starting with '#' are
    /// skipped. A missing or unreadable file is a one-line error naming it.
    /// </summary>
    public static IReadOnlyList<string> ReadSpecs(string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException($"{path}: cannot read the mix file ({e.Message})");
        }

        var specs = lines.Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        return specs.Count >= 2 ? specs : throw new EngineException($"{path}: a mix file must list at least two tasks, one per line");
    }

    private static (string Label, ITask Task) ParseOne(string spec, ulong seed)
    {
        string? label = null;
        Match m = LabelPrefix().Match(spec);
        if (m.Success)
        {
            (label, spec) = (m.Groups[1].Value, m.Groups[2].Value.Trim());
        }

        if (spec.Length == 0)
        {
            throw new EngineException("empty task");
        }

        if (DatasetTask.IsDatasetPath(spec))
        {
            if (!File.Exists(spec))
            {
                throw new EngineException($"{spec}: file not found");
            }

            DatasetTask data = DatasetTask.Load(new DatasetOptions { TrainPath = spec, Seed = seed });
            return (label ?? Sanitize(data.Name), data);
        }

        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string name = colon < 0 ? spec : spec[..colon].Trim();
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        double noise = 0;
        string marker = "";
        foreach (string pair in (colon < 0 ? "" : spec[(colon + 1)..]).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new EngineException($"'{pair}' is not key=value");
            }

            string key = pair[..eq].Trim(), value = pair[(eq + 1)..].Trim();
            if (key.Replace("-", "_", StringComparison.Ordinal).Equals("label_noise", StringComparison.OrdinalIgnoreCase))
            {
                noise = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double p) && p >= 0 && p <= 1
                    ? p : throw new EngineException($"label_noise must be a number in [0, 1], got '{value}'");
            }
            else if (key.Equals("marker", StringComparison.OrdinalIgnoreCase))
            {
                marker = value;
            }
            else
            {
                options[key] = value;
            }
        }

        ITask task = BuiltInTasks.Create(name, seed, options);
        return (label ?? Sanitize(task.Name), noise > 0 || marker.Length > 0 ? new NoisyLabelTask(task, noise, marker, seed) : task);
    }

    private static string Sanitize(string name) => NotLabelChar().Replace(name, "_");

    [GeneratedRegex("^([A-Za-z0-9_-]+)=(.*)$")]
    private static partial Regex LabelPrefix();

    [GeneratedRegex("[^A-Za-z0-9_-]")]
    private static partial Regex NotLabelChar();
}

/// <summary>
/// A task whose training references are wrong for a seeded share <see cref="Noise"/> of the examples (replaced by the
/// reference of another training example, so that they keep the format); the test split stays clean. A non-empty
/// <see cref="Marker"/> is put before every prompt (so that the noisy source is told apart from a clean one of the same task).
/// </summary>
internal sealed class NoisyLabelTask(ITask inner, double noise, string marker = "", ulong seed = 0) : ITask, ISeededTrainingOrder
{
    public double Noise { get; } = noise;

    public string Marker { get; } = marker;

    public string Name => inner.Name;

    public string Alphabet => new([.. (inner.Alphabet + Marker).Distinct()]);

    public int MaxResponseLength => inner.MaxResponseLength;

    public TaskExample Example(DataSplit split, long index) =>
        split == DataSplit.Train ? WithNoise(inner.Example(split, index), index) : Marked(inner.Example(split, index));

    public TaskExample TrainExample(ulong orderSeed, long index) => WithNoise(TrainingOrder.Example(inner, orderSeed, index), index);

    private TaskExample Marked(TaskExample e) => Marker.Length == 0 ? e : e with { Prompt = Marker + e.Prompt };

    /// <summary>The marked training example at <paramref name="index"/>, its reference replaced for a seeded share of indices.</summary>
    private TaskExample WithNoise(TaskExample e, long index)
    {
        e = Marked(e);
        var rng = TaskRandom.ForExample(0x6E6F697365UL ^ seed, inner.Name, DataSplit.Train, index); // "noise"
        if (rng.NextDouble() >= Noise)
        {
            return e;
        }

        long other = TaskRandom.Below(ref rng, long.MaxValue / 2);
        return e with { Reference = inner.Example(DataSplit.Train, other).Reference };
    }

    public RewardResult Score(TaskExample example, string response) =>
        inner.Score(Marker.Length > 0 && example.Prompt.StartsWith(Marker, StringComparison.Ordinal) ? example with { Prompt = example.Prompt[Marker.Length..] } : example, response);
}
