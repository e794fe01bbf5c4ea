namespace Engine;

/// <summary>The settings of <c>engine demo</c>: a small GPT-2-style policy learns multi-digit addition.</summary>
internal static class DemoDefaults
{
    /// <summary>The demo's run options.</summary>
    public static RunOptions Options() => new()
    {
        Task = new TaskOptions { Name = "addition", Seed = 1, Parameters = "min_digits=1,max_digits=2" },
        Model = new ModelOptions { Family = "gpt2", Layers = 2, Dim = 128, Heads = 4, MaxPositions = 24, InitSeed = 1 },
        Sft = new SftOptions { Steps = 400, BatchSize = 64, LearningRate = 3e-3f, WarmupSteps = 20, EvalExamples = 300 },
        Rl = RlOptions.Dapo() with
        {
            Steps = 300, PromptsPerStep = 32, SamplesPerPrompt = 8, MaxNewTokens = 7, OverlongBuffer = 3, LearningRate = 5e-4f, WarmupSteps = 5,
            WeightDecay = 0.0f, EvalEvery = 50, EvalExamples = 300, EvalSamples = 8, MiniBatches = 2,
        },
    };
}
