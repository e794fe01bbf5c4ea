using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Experiments;

/// <summary>
/// The models the post-training experiments start from: new models of a shape on a task's character
/// tokenizer, trained by SFT for a number of steps (a teacher or guide: long; a student: short), copied per arm,
/// and evaluated on held-out examples.
/// </summary>
internal static class WarmStart
{
    /// <summary>A new model of <paramref name="shape"/> (initialised with its seed) trained by <paramref name="sft"/> on <paramref name="task"/>.</summary>
    public static Transformer Train(Accelerator acc, ModelOptions shape, CharTokenizer tokenizer, ITask task, SftOptions sft, RlOptions rl)
    {
        var model = new Transformer(acc, shape.Build(tokenizer.VocabSize) with { EosTokenIds = [tokenizer.EosTokenId!.Value] });
        try
        {
            ModelInit.Initialize(model, shape.InitSeed, shape.InitStd);
            using Generator generator = NewGenerator(model, rl);
            using var trainer = new SftTrainer(model, Codec(tokenizer, model), task, sft, generator);
            while (trainer.StepsDone < sft.Steps)
            {
                trainer.Step();
            }

            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The task codec of a character-tokenized model.</summary>
    public static TaskCodec Codec(CharTokenizer tokenizer, Transformer model) => TaskCodec.For(tokenizer, model.Config.EosTokenIds);

    /// <summary>A copy of <paramref name="source"/>'s weights on its device.</summary>
    public static Transformer CopyOf(Transformer source)
    {
        var copy = new Transformer(source.Acc, source.Config);
        source.Acc.Copy(copy.Params.All, source.Params.All);
        return copy;
    }

    /// <summary>A generator with the RL settings' slots and KV budget.</summary>
    public static Generator NewGenerator(Transformer model, RlOptions rl) =>
        new(model, new GeneratorOptions { MaxSlots = rl.MaxConcurrentSequences, KvBudgetBytes = (long)rl.KvCacheMb << 20 });

    /// <summary>Test accuracy: avg@k at the rollout temperature and greedy, on the RL settings' evaluation examples.</summary>
    public static Evaluation Evaluate(Transformer model, TaskCodec codec, ITask task, RlOptions rl)
    {
        using Generator generator = NewGenerator(model, rl);
        return Evaluator.Run(generator, codec, task, rl.MaxNewTokens, rl.EvalExamples, rl.EvalSamples, rl.Temperature, rl.Seed);
    }
}
