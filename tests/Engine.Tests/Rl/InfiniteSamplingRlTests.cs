using Engine.Core;

namespace Engine.Tests.Rl;

/// <summary>
/// Infinite Sampling in training, through the public API: G = 32 under a KV budget the full-group
/// sampler cannot meet gives the same steps (rollouts, advantages, update) as full-group decoding.
/// </summary>
public sealed class InfiniteSamplingRlTests
{
    // Two layers of width 128: a 16-position KV block is 32 KiB, so 2 MiB hold 64 blocks. One group
    // of 32 worst-case responses (7-token prompt + 64 new tokens: 5 blocks each) needs 161.
    private static readonly ModelOptions Shape = new() { Layers = 2, Dim = 128, Heads = 4, MaxPositions = 80, InitStd = 0.1f };

    private static RlOptions Options(SamplerKind sampler, int kvMb) => RlOptions.Grpo() with
    {
        Steps = 2, PromptsPerStep = 2, SamplesPerPrompt = 32, MaxNewTokens = 64, LearningRate = 1e-2f, WarmupSteps = 0, EvalEvery = 0,
        MaxConcurrentSequences = 64, KvCacheMb = kvMb, Sampler = sampler,
    };

    private static (double[] Values, string Text) Steps(SamplerKind sampler, int kvMb)
    {
        ITask task = BuiltInTasks.Create("addition", seed: 5, new Dictionary<string, string> { ["max_digits"] = "2" });
        using LanguageModel model = LanguageModel.CreateForTask(task, Shape, "cpu");
        using RlSession rl = model.StartRl(task, Options(sampler, kvMb));
        var values = new List<double>();
        for (int i = 0; i < 2; i++)
        {
            RlStepMetrics m = rl.Step();
            values.AddRange([m.RewardMean, m.Accuracy, m.ResponseLength, m.Entropy, m.Loss, m.GradNorm, m.RatioMean, m.ApproxKl, m.TokensGenerated,
                m.TokensTrained, m.GroupsKept]);
        }

        return (values.ToArray(), string.Join(", ", values.Select(v => BitConverter.DoubleToInt64Bits(v).ToString("x16"))));
    }

    [Fact]
    public void The_generation_settings_choose_the_sampler_and_every_sampler_samples_alike()
    {
        ITask task = BuiltInTasks.Create("addition", seed: 5, new Dictionary<string, string> { ["max_digits"] = "2" });
        using LanguageModel model = LanguageModel.CreateForTask(task, Shape, "cpu");
        var sampling = new SamplingOptions { MaxNewTokens = 40, Seed = 3 };
        string Texts(SamplerKind sampler, long kvBytes)
        {
            model.GenerationSettings = model.GenerationSettings with { Sampler = sampler, KvCacheBytes = kvBytes };
            return string.Join("|", model.Generate(["12+34=", "5+7="], 16, sampling).SelectMany(g => g.Samples).Select(s => s.Text));
        }

        string full = Texts(SamplerKind.Full, 8 << 20);
        Assert.Equal(full, Texts(SamplerKind.Infinite, 1 << 20));
        Assert.Equal(full, Texts(SamplerKind.Micro, 1 << 20));
        Assert.Throws<EngineException>(() => Texts(SamplerKind.Full, 1 << 20));
        Assert.Contains("sampler must be full, micro, continuous or infinite, got 9", Assert.Throws<EngineException>(() => Texts((SamplerKind)9, 8 << 20)).Message);
    }

    [Fact]
    public void Infinite_sampling_under_a_budget_full_cannot_meet_trains_exactly_like_full_group_decoding()
    {
        var ex = Assert.Throws<EngineException>(() => Steps(SamplerKind.Full, 2));
        Assert.Contains("'full' sampler", ex.Message);
        var full = Steps(SamplerKind.Full, 8);
        var infinite = Steps(SamplerKind.Infinite, 2);
        Assert.True(full.Values[2] > 2, $"responses must be long enough to probe and vary: mean length {full.Values[2]}");
        Assert.Equal(full.Text, infinite.Text);
    }

    [Fact]
    public void An_rl_step_reports_its_rollouts_peak_kv_and_decode_steps()
    {
        var task = new Support.RlSessions.SevenTask();
        using LanguageModel model = LanguageModel.CreateForTask(task, Support.RlSessions.Shape, "cpu");
        RlOptions options = Support.RlSessions.Tiny(RlOptions.Grpo()) with { Steps = 1 };
        using RlSession rl = model.StartRl(task, options);
        RlStepMetrics m = rl.Step();
        int slots = Math.Min(options.MaxConcurrentSequences, options.PromptsPerStep * options.SamplesPerPrompt);
        Assert.True(m.PeakKvBytes > 0, "a step that sampled must report the KV it held");
        Assert.True(m.DecodeSteps >= (m.TokensGenerated + slots - 1) / slots, $"{m.DecodeSteps} decode steps for {m.TokensGenerated} tokens on {slots} slots");
        Assert.True(m.DecodeSteps <= m.TokensGenerated, $"{m.DecodeSteps} decode steps for {m.TokensGenerated} tokens");
    }
}
