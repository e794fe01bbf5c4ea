using System.Diagnostics;
using Engine.Generation;
using Engine.Model;

namespace Engine.Training;

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

    /// <summary>One optimizer step on the next batch of training examples.</summary>
    public SftStepMetrics Step()
    {
        long start = Stopwatch.GetTimestamp();
        int step = StepsDone;
        int b = Options.BatchSize;
        var rows = new (int[] Prompt, int[] Response)[b];
        int longest = 0;
        for (int i = 0; i < b; i++)
        {
            TaskExample e = task.Example(DataSplit.Train, (long)step * b + i);
            rows[i] = (codec.Prompt(e), codec.Response(e.Reference));
            longest = Math.Max(longest, rows[i].Prompt.Length + rows[i].Response.Length);
        }

        int t = Math.Max(longest, Math.Min(model.Config.MaxPositions, (longest + LengthBucket - 1) / LengthBucket * LengthBucket));
        var tokens = new int[b * t];
        var mask = new float[b * t];
        for (int i = 0; i < b; i++)
        {
            var (prompt, response) = rows[i];
            prompt.CopyTo(tokens, i * t);
            response.CopyTo(tokens, i * t + prompt.Length);
            for (int j = 0; j < response.Length; j++)
            {
                mask[i * t + prompt.Length + j] = 1f;
            }
        }

        model.SetTokens(tokens, b, t);
        model.ZeroGradients();
        float loss = model.ForwardBackwardNextToken(mask);
        float lr = LearningRateAt(step);
        Optimizer.Step(lr, loss); // a non-finite step is skipped (and counted in the metrics); too many in a row throw
        double gradNorm = Optimizer.LastGradNorm();
        StepsDone = step + 1;
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        double? accuracy = Options.EvalEvery > 0 && StepsDone % Options.EvalEvery == 0 ? Evaluate().GreedyAccuracy : null;
        return EngineTelemetry.Publish(new SftStepMetrics
        {
            Step = StepsDone, Loss = loss, GradNorm = gradNorm, LearningRate = lr, TokensPerSecond = b * t / seconds, TestAccuracy = accuracy,
            Skipped = Optimizer.LastSkipReason,
        });
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
