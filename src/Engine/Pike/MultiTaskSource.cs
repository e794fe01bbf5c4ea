using System.Globalization;
using Engine.Core;
using Engine.Model;
using Engine.Training;

namespace Engine.Pike;

/// <summary>
/// The batches of multi-task SFT: every step draws <c>b_k</c> examples from each task's own stream (example
/// <c>step * b + j</c> of task k, so a batch depends only on the step and the shares), and every T0 steps an adaptive
/// mixer measures each task's gradient statistics (two half-batch backward passes per task: one extra backward of
/// the task's sub-batch) and updates the shares.
/// </summary>
internal sealed class MultiTaskSource : ISftBatchSource, IDisposable
{
    private readonly MixOptions options;
    private readonly int batchSize;
    private GradientStatistics? statistics;
    private Dictionary<string, object>? lastMetrics;

    public MultiTaskSource(MixedTask tasks, MixOptions options, int batchSize, IReadOnlyList<double>? initialWeights = null)
    {
        options.Validate();
        Tasks = tasks;
        this.options = options;
        this.batchSize = batchSize;
        double[] initial = initialWeights?.ToArray() ?? [.. tasks.Tasks.Select(_ => 1.0)];
        if (initial.Length != tasks.Tasks.Count)
        {
            throw new EngineException($"mix: {initial.Length} initial weights for {tasks.Tasks.Count} tasks");
        }

        Mixer = options.Mixer switch
        {
            MixerKind.Uniform => new StaticMixer(initial),
            MixerKind.Pike => new PikeMixer(initial, options.Zeta1, options.Zeta2, batchSize),
            MixerKind.BalancedPike => new BalancedPikeMixer(initial, options.Zeta1, options.Zeta2, batchSize, options.Tau),
            _ => throw new EngineException($"mix: mixer must be uniform, pike or balanced-pike, got {(int)options.Mixer}"),
        };
        Counts = Simplex.Round(Mixer.Weights, batchSize, options.MinPerTask);
    }

    /// <summary>The tasks being mixed.</summary>
    public MixedTask Tasks { get; }

    /// <summary>The mixer deciding the shares.</summary>
    public IDataMixer Mixer { get; }

    /// <summary>The examples of each task in the next batch (<c>b_k</c>, summing to the batch size).</summary>
    public int[] Counts { get; private set; }

    /// <summary>Each task's statistics at the last update (null before the first or for a static mixer).</summary>
    public IReadOnlyList<TaskStatistics>? LastStatistics { get; private set; }

    /// <summary>The mean pairwise cosine of the task gradients at the last update.</summary>
    public double? LastCosine { get; private set; }

    public IReadOnlyList<TaskExample> Batch(SftTrainer trainer, int step)
    {
        if (trainer.Options.BatchSize != batchSize)
        {
            throw new EngineException($"mix: the source was built for batch size {batchSize}, the trainer uses {trainer.Options.BatchSize}");
        }

        var metrics = new Dictionary<string, object>(StringComparer.Ordinal);
        if (Mixer.Adaptive && step % options.UpdateEvery == 0)
        {
            Update(trainer, step, metrics);
        }

        var batch = new List<TaskExample>(batchSize);
        for (int k = 0; k < Counts.Length; k++)
        {
            for (int j = 0; j < Counts[k]; j++)
            {
                batch.Add(Tasks.TrainExample(k, trainer.Options.Seed, (long)step * batchSize + j));
            }
        }

        for (int k = 0; k < Counts.Length; k++)
        {
            metrics["mix_weight_" + Tasks.Labels[k]] = Math.Round(Mixer.Weights[k], 6);
            metrics["mix_batch_" + Tasks.Labels[k]] = Counts[k];
        }

        lastMetrics = metrics;
        return batch;
    }

    public Dictionary<string, object>? StepMetrics() => lastMetrics;

    /// <summary>
    /// The mixture weights of the last SFT metrics line that has them for every task (a resumed run continues from them),
    /// or null (none logged: start from equal weights).
    /// </summary>
    public static double[]? WeightsFrom(IReadOnlyList<System.Text.Json.Nodes.JsonObject> metrics, MixedTask tasks)
    {
        for (int i = metrics.Count - 1; i >= 0; i--)
        {
            if ((string?)metrics[i]["phase"] != "sft")
            {
                continue;
            }

            double?[] w = [.. tasks.Labels.Select(l => Runs.HtmlReport.Number(metrics[i]["mix_weight_" + l]))];
            if (w.All(x => x is > 0))
            {
                return [.. w.Select(x => x!.Value)];
            }
        }

        return null;
    }

    /// <summary>Greedy test accuracy of each task on <paramref name="count"/> held-out examples.</summary>
    public double[] EvaluatePerTask(Generation.Generator generator, TaskCodec codec, int count, ulong seed) =>
        [.. Tasks.Tasks.Select(t => Evaluator.Run(generator, codec, t, t.MaxResponseLength + 1, count, 0, 1f, seed).GreedyAccuracy)];

    public void Dispose() => statistics?.Dispose();

    /// <summary>Measures every task's statistics at the current parameters and updates the shares.</summary>
    private void Update(SftTrainer trainer, int step, Dictionary<string, object> metrics)
    {
        Transformer model = trainer.Model;
        long length = model.Layout.TotalLength;
        statistics ??= new GradientStatistics(model.Acc, length, Counts.Length);
        using DeviceBuffer halfA = model.Acc.Allocate(length);
        var stats = new TaskStatistics[Counts.Length];
        for (int k = 0; k < Counts.Length; k++)
        {
            // The task's sub-batch (at least two examples, an even count), split in halves.
            int n = options.StatisticsExamples > 0 ? options.StatisticsExamples : Counts[k];
            n = Math.Max(2, n + (n & 1));
            var examples = Enumerable.Range(0, n).Select(j => Tasks.TrainExample(k, trainer.Options.Seed, (long)step * batchSize + j)).ToList();
            model.ZeroGradients();
            float lossA = trainer.ForwardBackward(examples[..(n / 2)], out _);
            model.Acc.Copy(halfA.All, model.Grads!.All);
            model.ZeroGradients();
            float lossB = trainer.ForwardBackward(examples[(n / 2)..], out _);
            var (normSquared, variance) = statistics.FromHalves(k, halfA.All, model.Grads!.All, n);
            stats[k] = new TaskStatistics(normSquared, variance, (lossA + lossB) / 2.0);
        }

        model.ZeroGradients();
        Mixer.Update(stats);
        Counts = Simplex.Round(Mixer.Weights, batchSize, options.MinPerTask);
        LastStatistics = stats;
        LastCosine = statistics.MeanPairwiseCosine();
        for (int k = 0; k < stats.Length; k++)
        {
            string label = Tasks.Labels[k];
            metrics["mix_grad_sq_" + label] = Round(stats[k].NormSquared);
            metrics["mix_variance_" + label] = Round(stats[k].Variance);
            metrics["mix_loss_" + label] = Round(stats[k].Loss);
            if (Mixer is BalancedPikeMixer balanced)
            {
                metrics["mix_y_" + label] = Round(balanced.TaskWeights[k]);
            }
        }

        if (double.IsFinite(LastCosine.Value))
        {
            metrics["mix_cosine_mean"] = Round(LastCosine.Value);
        }
    }

    private static double Round(double x) => double.Parse(x.ToString("G6", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
