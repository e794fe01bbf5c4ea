using Engine.Core;
using Engine.Data;
using Engine.Tasks;
using Engine.Util;

namespace Engine;

/// <summary>
/// A task read from dataset files (see <see cref="DatasetOptions"/>): training examples drawn in a
/// seeded order that is reshuffled every epoch, evaluation examples in file order, and responses
/// scored by a reward (<see cref="Rewards"/>).
/// </summary>
/// <remarks>
/// Index i of the training split is example i mod N of epoch i / N, so any number of steps can be
/// drawn; index i of the test split is evaluation example i mod M. The trainers shuffle with their own
/// seed (sft.seed, rl.seed); <see cref="Example"/> with <see cref="DataSplit.Train"/> uses
/// <see cref="DatasetOptions.Seed"/>. Several datasets (for a task mix) are several instances, each with
/// its own options.
/// </remarks>
public sealed class DatasetTask : ITask, ISeededTrainingOrder
{
    private readonly TaskExample[] _train;
    private readonly TaskExample[] _eval;
    private readonly IRewardFunction _reward;
    private readonly DatasetOptions _options;

    private DatasetTask(DatasetOptions options, TaskExample[] train, TaskExample[] eval, int skipped, IRewardFunction reward)
    {
        _options = options;
        _train = train;
        _eval = eval;
        _reward = reward;
        SkippedRows = skipped;
        Name = options.Name.Length > 0 ? options.Name : Path.GetFileNameWithoutExtension(options.TrainPath);
        Alphabet = new string(train.Concat(eval)
            .SelectMany(e => e.Prompt.Concat(e.Reference).Concat(e.Messages?.SelectMany(m => m.Content) ?? []))
            .Distinct().Order().ToArray());
        MaxResponseLength = Math.Max(1, train.Concat(eval).Max(e => e.Reference.Length));
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public string Alphabet { get; }

    /// <inheritdoc/>
    public int MaxResponseLength { get; }

    /// <summary>Training examples.</summary>
    public int TrainCount => _train.Length;

    /// <summary>Evaluation examples.</summary>
    public int EvalCount => _eval.Length;

    /// <summary>Rows left out as malformed (with <see cref="MalformedRowPolicy.Skip"/>), over every file.</summary>
    public int SkippedRows { get; }

    /// <summary>
    /// Reads the dataset. <paramref name="reward"/> scores responses; null: the "exact" verifier
    /// (the trimmed response equals the answer).
    /// </summary>
    /// <exception cref="EngineException">A missing or unreadable file, an empty one, a malformed row (under
    /// <see cref="MalformedRowPolicy.Fail"/>), or options out of range.</exception>
    public static DatasetTask Load(DatasetOptions options, IRewardFunction? reward = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.TrainPath.Length == 0)
        {
            throw new EngineException("dataset: no training file given");
        }

        if (!(options.EvalFraction >= 0 && options.EvalFraction < 1))
        {
            throw new EngineException($"dataset: the eval fraction must be at least 0 and below 1, got {options.EvalFraction}");
        }

        if (options.PromptField.Length == 0 && options.MessagesField.Length == 0)
        {
            throw new EngineException("dataset: name a prompt field or a messages field");
        }

        var (rows, skipped) = DatasetRows.Load(options.TrainPath, options);
        TaskExample[] train, eval;
        if (options.EvalPath.Length > 0)
        {
            var (evalRows, evalSkipped) = DatasetRows.Load(options.EvalPath, options);
            (train, eval, skipped) = (rows.ToArray(), evalRows.ToArray(), skipped + evalSkipped);
        }
        else
        {
            // Held-out rows are a seeded random subset, so a file sorted by difficulty still splits fairly.
            int evalCount = (int)Math.Round(options.EvalFraction * rows.Count);
            if (options.EvalFraction > 0 && evalCount == 0 && rows.Count > 1)
            {
                evalCount = 1;
            }

            if (evalCount >= rows.Count)
            {
                throw new EngineException($"{options.TrainPath}: {rows.Count} row(s) leave no training examples after holding out {options.EvalFraction:P0} for evaluation");
            }

            int[] order = Permutation(rows.Count, options.Seed, ulong.MaxValue);
            var held = order.Take(evalCount).Order().ToArray();
            var heldSet = held.ToHashSet();
            eval = held.Select(i => rows[i]).ToArray();
            train = Enumerable.Range(0, rows.Count).Where(i => !heldSet.Contains(i)).Select(i => rows[i]).ToArray();
        }

        return new DatasetTask(options, train, eval, skipped, reward ?? Rewards.Parse("exact"));
    }

    /// <inheritdoc/>
    public TaskExample Example(DataSplit split, long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        if (split == DataSplit.Test)
        {
            return _eval.Length > 0
                ? _eval[index % _eval.Length]
                : throw new EngineException($"dataset '{Name}' has no evaluation examples (give an eval file or an eval fraction above 0)");
        }

        return Shuffled(_options.Seed, index);
    }

    /// <summary>Training example <paramref name="index"/> in the order shuffled by <paramref name="orderSeed"/>.</summary>
    TaskExample ISeededTrainingOrder.TrainExample(ulong orderSeed, long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        return Shuffled(orderSeed, index);
    }

    private TaskExample Shuffled(ulong orderSeed, long index)
    {
        long epoch = index / _train.Length;
        int position = (int)(index % _train.Length);
        if (!_options.Shuffle)
        {
            return _train[position];
        }

        // One permutation per (seed, epoch), computed on demand (cached for the current one).
        var cached = _epochOrder;
        if (cached is null || cached.Seed != orderSeed || cached.Epoch != epoch)
        {
            cached = new EpochOrder(orderSeed, epoch, Permutation(_train.Length, orderSeed, (ulong)epoch));
            _epochOrder = cached;
        }

        return _train[cached.Order[position]];
    }

    /// <inheritdoc/>
    public RewardResult Score(TaskExample example, string response) => Rewards.Score(_reward, example, response);

    /// <summary>Scores several responses to one example in parallel (results in response order).</summary>
    internal RewardResult[] ScoreAll(TaskExample example, IReadOnlyList<string> responses) =>
        Rewards.ScoreAll(_reward, Enumerable.Repeat(example, responses.Count).ToArray(), responses);

    /// <summary>True when <paramref name="path"/> names a dataset file (.jsonl or .parquet) rather than a built-in task.</summary>
    public static bool IsDatasetPath(string path) => DatasetFile.IsDatasetPath(path);

    private EpochOrder? _epochOrder;

    private sealed record EpochOrder(ulong Seed, long Epoch, int[] Order);

    /// <summary>A Fisher-Yates permutation of 0..n-1 keyed by (seed, stream).</summary>
    private static int[] Permutation(int n, ulong seed, ulong stream)
    {
        var rng = new SplitMix64(seed ^ (0x9E3779B97F4A7C15UL * (stream + 1)));
        int[] order = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }
}
