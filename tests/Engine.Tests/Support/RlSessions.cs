using System.Text.Json;
using System.Text.Json.Nodes;

namespace Engine.Tests.Support;

/// <summary>Tiny RL sessions through the public API, shared by the post-training methods' tests.</summary>
internal static class RlSessions
{
    /// <summary>A policy shape that trains in well under a second per step.</summary>
    public static readonly ModelOptions Shape = new() { Layers = 1, Dim = 32, Heads = 2, MaxPositions = 16, InitStd = 0.1f };

    /// <summary>Answer with the digit 7: an untrained policy gets some right, so groups mix rewards.</summary>
    public sealed class SevenTask : ITask
    {
        public string Name => "seven";

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 2;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}{(index / 10) % 10}=", "7");

        public RewardResult Score(TaskExample example, string response) =>
            response == "7" ? new RewardResult(1, true) : new RewardResult(0, false);
    }

    /// <summary>A task with another alphabet (so another vocabulary) than <see cref="SevenTask"/>.</summary>
    public sealed class OtherAlphabetTask(string alphabet = "0123456789+=") : ITask
    {
        public string Name => "other";

        public string Alphabet => alphabet;

        public int MaxResponseLength => 2;

        public TaskExample Example(DataSplit split, long index) => new("1=", "2");

        public RewardResult Score(TaskExample example, string response) => new(0, false);
    }

    /// <summary>A few small RL steps of <paramref name="preset"/>.</summary>
    public static RlOptions Tiny(RlOptions preset) => preset with
    {
        Steps = 3, PromptsPerStep = 6, SamplesPerPrompt = 6, MaxNewTokens = 3, OverlongBuffer = 1, LearningRate = 2e-2f, WarmupSteps = 0,
        EvalEvery = 0, EvalExamples = 8, MaxConcurrentSequences = 36, KvCacheMb = 8, MicroBatchSequences = 7, MiniBatches = 2,
    };

    /// <summary>Trains a fresh <see cref="Shape"/> policy; returns each step's metrics (timings removed) as JSON and the final weights.</summary>
    public static (string[] Metrics, float[] Weights) Train(ITask task, RlOptions options, LanguageModel? teacher = null, LanguageModel? guide = null)
    {
        using LanguageModel student = LanguageModel.CreateForTask(task, Shape);
        using RlSession session = student.StartRl(task, options, teacher, guide);
        var metrics = new List<string>();
        for (int i = 0; i < options.Steps; i++)
        {
            var line = JsonSerializer.SerializeToNode(session.Step())!.AsObject();
            foreach (string timing in new[] { "SamplingSeconds", "TrainingSeconds", "TokensPerSecond" })
            {
                line.Remove(timing);
            }

            metrics.Add(line.ToJsonString());
        }

        return (metrics.ToArray(), student.Model.Acc.ToArray(student.Model.Params.All));
    }

    /// <summary>A metrics line without the method metrics whose names satisfy <paramref name="drop"/>.</summary>
    public static string Without(string line, Func<string, bool> drop)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        foreach (string key in o.Select(p => p.Key).Where(drop).ToList())
        {
            o.Remove(key);
        }

        return o.ToJsonString();
    }
}
