using Engine.Generation;

namespace Engine.Training;

/// <summary>Test accuracy of a policy on a task: greedy responses to held-out prompts, checked by the task.</summary>
internal static class Evaluator
{
    /// <summary>Fraction of the first <paramref name="count"/> examples of <paramref name="split"/> answered correctly.</summary>
    public static double Accuracy(Generator generator, TaskCodec codec, ITask task, int maxNewTokens, int count,
        DataSplit split = DataSplit.Test)
    {
        var examples = Enumerable.Range(0, count).Select(i => task.Example(split, i)).ToArray();
        var prompts = examples.Select(e => codec.Prompt(e.Prompt)).ToArray();
        var groups = generator.Generate(prompts, 1, new SamplingOptions
        {
            MaxNewTokens = maxNewTokens, Temperature = 0, EosTokenIds = [codec.Eos],
        });
        int correct = 0;
        for (int i = 0; i < count; i++)
        {
            if (task.Score(examples[i], codec.Decode(groups[i].Samples[0].TokenIds)).Correct)
            {
                correct++;
            }
        }

        return (double)correct / count;
    }
}
