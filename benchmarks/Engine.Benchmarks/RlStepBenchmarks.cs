using BenchmarkDotNet.Attributes;
using Engine.Core;
using Engine.Model;
using Engine.Rl;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Benchmarks;

/// <summary>
/// One RL trainer step (rollout of 8 prompts x 8 samples with the generation engine, reward,
/// group advantages, one PPO epoch, AdamW) on the built-in addition task, for a preset's model
/// body (its vocabulary replaced by the task's characters), on every backend.
/// </summary>
/// <remarks>
/// Dynamic sampling is off in both algorithms: it refills filtered groups a data-dependent number
/// of times, which would make the work per step depend on what the policy has learnt so far. DAPO's
/// other settings (clip-higher, token-level loss, soft overlong punishment) stay on.
/// </remarks>
[MemoryDiagnoser]
public class RlStepBenchmarks : DevicePresetBenchmark
{
    /// <summary>Most tokens of a prompt ("999+999=") plus the response, with room to spare.</summary>
    private const int MaxPositions = 32;

    private Accelerator? acc;
    private Transformer? policy;
    private RlTrainer? trainer;

    /// <summary>grpo or dapo (<see cref="RlOptions.Grpo"/>, <see cref="RlOptions.Dapo"/>).</summary>
    [Params("grpo", "dapo")]
    public string Algo { get; set; } = "dapo";

    /// <summary>Builds the policy and the trainer and runs one step.</summary>
    [GlobalSetup]
    public void Setup()
    {
        ITask task = BuiltInTasks.Create("addition", seed: 1);
        var tokenizer = new CharTokenizer(task.Alphabet);
        ModelConfig config = Presets.Config(Preset, MaxPositions) with
        {
            VocabSize = tokenizer.VocabSize, EosTokenIds = [tokenizer.EosTokenId!.Value],
        };
        acc = BenchmarkDevices.Open(Device);
        policy = new Transformer(acc, config);
        ModelInit.Initialize(policy, 1);
        RlOptions preset = Algo == "grpo" ? RlOptions.Grpo() : RlOptions.Dapo();
        RlOptions options = preset with
        {
            Steps = int.MaxValue, PromptsPerStep = 8, SamplesPerPrompt = 8, MaxNewTokens = task.MaxResponseLength + 2, OverlongBuffer = 2,
            LearningRate = 1e-4f, WarmupSteps = 0, EvalEvery = 0, DynamicSampling = false, MaxGenerationBatches = 1,
            MaxConcurrentSequences = 64, KvCacheMb = 16,
        };
        trainer = new RlTrainer(policy, TaskCodec.For(tokenizer, config.EosTokenIds), task, options);
        trainer.Step();
    }

    /// <summary>One step; returns the mean reward so the work is used.</summary>
    [Benchmark]
    public double Step() => trainer!.Step().RewardMean;

    /// <summary>Releases the trainer, the policy and the accelerator.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        trainer?.Dispose();
        policy?.Dispose();
        acc?.Dispose();
    }
}
