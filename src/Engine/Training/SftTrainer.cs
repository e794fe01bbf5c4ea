using System.Diagnostics;
using Engine.Distributed;
using Engine.Generation;
using Engine.Model;
using Engine.Tasks;

namespace Engine.Training;

/// <summary>Chooses the examples of each SFT step (multi-task mixing); see <see cref="SftTrainer.BatchSource"/>.</summary>
internal interface ISftBatchSource
{
    /// <summary>
    /// The examples of step <paramref name="step"/> (the trainer's batch size of them). May run forward/backward
    /// passes through <paramref name="trainer"/> (the trainer zeroes the gradients afterwards).
    /// </summary>
    IReadOnlyList<TaskExample> Batch(SftTrainer trainer, int step);

    /// <summary>Metrics of the last <see cref="Batch"/> call for metrics.jsonl (snake_case names), or null.</summary>
    Dictionary<string, object>? StepMetrics();
}

/// <summary>
/// Supervised fine-tuning on a task's (prompt, reference) pairs: next-token cross-entropy on the
/// response tokens (and EOS) only, AdamW with warm-up and cosine decay. Example order is keyed by
/// (seed, step), so resumed runs continue identically.
/// </summary>
internal sealed class SftTrainer : IDisposable
{
    private const int LengthBucket = 16;
    private readonly Transformer model;
    private readonly TaskCodec codec;
    private readonly ITask task;
    private readonly Generator generator;
    private readonly bool ownsGenerator;

    public SftTrainer(Transformer model, TaskCodec codec, ITask task, SftOptions options, Generator? generator = null)
    {
        options.Validate();
        this.model = model;
        this.codec = codec;
        this.task = task;
        Options = options;
        Optimizer = new AdamWOptimizer(model, new AdamWOptions
        {
            LearningRate = options.LearningRate, Beta1 = options.Beta1, Beta2 = options.Beta2, WeightDecay = options.WeightDecay,
            MaxGradNorm = options.MaxGradNorm, MaxNonfiniteSkips = options.MaxNonfiniteSkips,
        });
        ownsGenerator = generator is null;
        this.generator = generator ?? new Generator(model, new GeneratorOptions { MaxSlots = 64, KvBudgetBytes = 64L << 20 });
    }

    public SftOptions Options { get; }

    public AdamWOptimizer Optimizer { get; }

    /// <summary>
    /// Data parallelism: this rank trains on its share of each batch's rows, and the gradients are summed
    /// over ranks before the optimizer step (null: one process).
    /// </summary>
    public DataParallel? Parallel { get; set; }

    /// <summary>Steps completed.</summary>
    public int StepsDone { get; set; }

    /// <summary>Greedy test accuracy.</summary>
    public Evaluation Evaluate(int? count = null) =>
        Evaluator.Run(generator, codec, task, task.MaxResponseLength + 1, count ?? Options.EvalExamples, 0, 1f, Options.Seed);

    /// <summary>Learning rate at a step: linear warm-up, then cosine decay to the minimum fraction.</summary>
    public float LearningRateAt(int step)
    {
        SftOptions o = Options;
        if (step < o.WarmupSteps)
        {
            return o.LearningRate * (step + 1) / o.WarmupSteps;
        }

        double progress = o.Steps <= o.WarmupSteps ? 1 : (double)(step - o.WarmupSteps) / (o.Steps - o.WarmupSteps);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
        return (float)(o.LearningRate * (o.MinLearningRateFraction + (1 - o.MinLearningRateFraction) * cosine));
    }

    /// <summary>
    /// Chooses each step's examples instead of the task's own stream (multi-task mixing, Pike/); it may
    /// run forward/backward passes through <see cref="ForwardBackward(IReadOnlyList{TaskExample}, out int)"/> before the step. Null: the task's examples.
    /// </summary>
    internal ISftBatchSource? BatchSource { get; init; }

    /// <summary>The model being trained (for batch sources that measure gradients).</summary>
    internal Transformer Model => model;

    /// <summary>One optimizer step on the next batch of training examples.</summary>
    public SftStepMetrics Step()
    {
        long start = Stopwatch.GetTimestamp();
        AllReduceTotals? allReduceBefore = Parallel?.Totals;
        int step = StepsDone;
        int b = Options.BatchSize;
        IReadOnlyList<TaskExample> examples = BatchSource?.Batch(this, step)
            ?? [.. Enumerable.Range(0, b).Select(i => TrainingOrder.Example(task, Options.Seed, (long)step * b + i))];
        model.ZeroGradients();
        float loss;
        int t;
        if (Parallel is { } parallel)
        {
            if (b < parallel.Size)
            {
                throw new Core.EngineException($"sft.batch_size = {b} is smaller than the {parallel.Size} ranks: every rank needs at least one row");
            }

            // Each rank's loss is the mean over its own response tokens: weighted by its share of all of them,
            // the summed gradients (and losses) are those of the mean over the whole batch.
            loss = ForwardBackward(examples, out t, parallel.Share(b), out double targetShare);
            float weight = (float)targetShare;
            parallel.AllReduceGradients(model, weight);
            loss = (float)parallel.Sum([weight * (double)loss])[0];
        }
        else
        {
            loss = ForwardBackward(examples, out t);
        }

        float lr = LearningRateAt(step);
        Optimizer.Step(lr, loss); // a non-finite step is skipped (and counted in the metrics); too many in a row throw
        double gradNorm = Optimizer.LastGradNorm();
        StepsDone = step + 1;
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        double? accuracy = Options.EvalEvery > 0 && StepsDone % Options.EvalEvery == 0 ? Evaluate().GreedyAccuracy : null;
        AllReduceTotals? allReduce = Parallel?.Totals - allReduceBefore; // null in one process
        return EngineTelemetry.Publish(new SftStepMetrics
        {
            Step = StepsDone, Loss = loss, GradNorm = gradNorm, LearningRate = lr, TokensPerSecond = b * t / seconds, TestAccuracy = accuracy,
            Skipped = Optimizer.LastSkipReason, MethodMetrics = BatchSource?.StepMetrics(),
            AllReduceBytes = allReduce?.Bytes,
            AllReduceSeconds = allReduce?.Seconds,
            AllReduceWaitSeconds = allReduce?.WaitSeconds,
        });
    }

    /// <inheritdoc cref="ForwardBackward(IReadOnlyList{TaskExample}, out int, ValueTuple{int, int}, out double)"/>
    internal float ForwardBackward(IReadOnlyList<TaskExample> examples, out int paddedLength) =>
        ForwardBackward(examples, out paddedLength, (0, examples.Count), out _);

    /// <summary>
    /// Next-token cross-entropy on the responses of <paramref name="examples"/> (the token-mean over the
    /// batch): returns the loss and accumulates its gradients into the model's gradient buffer;
    /// <paramref name="paddedLength"/> is the row length the batch was padded to. Only the rows of
    /// <paramref name="share"/> [from, to) are computed (a data-parallel rank's part; padded to the whole
    /// batch's length), and <paramref name="targetShare"/> is their fraction of the batch's response tokens.
    /// </summary>
    internal float ForwardBackward(IReadOnlyList<TaskExample> examples, out int paddedLength, (int From, int To) share, out double targetShare)
    {
        int b = examples.Count;
        var rows = new (int[] Prompt, int[] Response)[b];
        int longest = 0;
        for (int i = 0; i < b; i++)
        {
            TaskExample e = examples[i];
            rows[i] = (codec.Prompt(e), codec.Response(e.Reference));
            longest = Math.Max(longest, rows[i].Prompt.Length + rows[i].Response.Length);
        }

        int t = Math.Max(longest, Math.Min(model.Config.MaxPositions, (longest + LengthBucket - 1) / LengthBucket * LengthBucket));
        var (from, to) = share;
        int localRows = to - from;
        double ownTargets = rows[from..to].Sum(r => (double)r.Response.Length), allTargets = rows.Sum(r => (double)r.Response.Length);
        targetShare = allTargets > 0 ? ownTargets / allTargets : 0;
        var tokens = new int[localRows * t];
        var mask = new float[localRows * t];
        for (int i = 0; i < localRows; i++)
        {
            var (prompt, response) = rows[from + i];
            prompt.CopyTo(tokens, i * t);
            response.CopyTo(tokens, i * t + prompt.Length);
            for (int j = 0; j < response.Length; j++)
            {
                mask[i * t + prompt.Length + j] = 1f;
            }
        }

        model.SetTokens(tokens, localRows, t);
        paddedLength = t;
        return model.ForwardBackwardNextToken(mask);
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        if (ownsGenerator)
        {
            generator.Dispose();
        }
    }
}
