using Engine.Generation;

namespace Engine;

/// <summary>Test accuracy of a policy on a task's held-out split.</summary>
/// <param name="Examples">Test prompts evaluated.</param>
/// <param name="GreedyAccuracy">Fraction answered correctly by greedy decoding.</param>
/// <param name="SampledAccuracy">
/// Mean correctness of <paramref name="SamplesPerExample"/> responses per prompt sampled at
/// <paramref name="Temperature"/> (avg@k, the DAPO paper's metric); null when no samples were drawn.
/// </param>
/// <param name="SamplesPerExample">k of avg@k.</param>
/// <param name="Temperature">Sampling temperature of avg@k.</param>
public sealed record Evaluation(int Examples, double GreedyAccuracy, double? SampledAccuracy, int SamplesPerExample, float Temperature)
{
    /// <summary>pass@k: the fraction of prompts with at least one correct response among the k samples; null when no samples were drawn.</summary>
    public double? PassAtK { get; init; }

    /// <summary>The headline figure: avg@k when sampled, else greedy accuracy.</summary>
    public double Accuracy => SampledAccuracy ?? GreedyAccuracy;
}

/// <summary>Evaluates a policy on held-out prompts with the generation engine.</summary>
internal static class Evaluator
{
    /// <summary>Sequence ids of evaluation samples, far from any training rollout's.</summary>
    private const long EvalSequenceIds = 1L << 60;

    /// <summary>
    /// Greedy accuracy over the first <paramref name="count"/> test examples and, when
    /// <paramref name="samples"/> &gt; 0, avg@k at <paramref name="temperature"/> with a fixed seed (so
    /// evaluations before and after training draw the same random numbers).
    /// </summary>
    public static Evaluation Run(Generator generator, Training.TaskCodec codec, ITask task, int maxNewTokens, int count, int samples,
        float temperature, ulong seed)
    {
        if (task is DatasetTask { EvalCount: > 0 } dataset)
        {
            count = Math.Min(count, dataset.EvalCount); // each evaluation row once, not wrapped around
        }

        var examples = Enumerable.Range(0, count).Select(i => task.Example(DataSplit.Test, i)).ToArray();
        var prompts = examples.Select(codec.Prompt).ToArray();
        var greedy = generator.Generate(prompts, 1, new SamplingOptions { MaxNewTokens = maxNewTokens, Temperature = 0, EosTokenIds = codec.StopIds });
        int correct = Enumerable.Range(0, count).Count(i => task.Score(examples[i], codec.Decode(greedy[i].Samples[0].TokenIds)).Correct);
        double? sampled = null, passAtK = null;
        if (samples > 0)
        {
            var groups = generator.Generate(prompts, samples, new SamplingOptions
            {
                MaxNewTokens = maxNewTokens, Temperature = temperature, Seed = seed, EosTokenIds = codec.StopIds,
            }, EvalSequenceIds);
            int hits = 0, solved = 0;
            for (int i = 0; i < count; i++)
            {
                int right = groups[i].Samples.Count(s => task.Score(examples[i], codec.Decode(s.TokenIds)).Correct);
                hits += right;
                solved += right > 0 ? 1 : 0;
            }

            sampled = (double)hits / (count * samples);
            passAtK = (double)solved / count;
        }

        return new Evaluation(count, (double)correct / count, sampled, samples, temperature) { PassAtK = passAtK };
    }
}
