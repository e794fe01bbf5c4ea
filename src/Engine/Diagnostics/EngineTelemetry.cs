using System.Diagnostics;
using System.Diagnostics.Metrics;
using Engine.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engine;

/// <summary>
/// The engine's telemetry, the .NET way: a <see cref="Meter"/> and an <see cref="ActivitySource"/> both named
/// <see cref="Name"/> ("Engine"), so OpenTelemetry (<c>AddMeter("Engine")</c>, <c>AddSource("Engine")</c>) or a
/// <see cref="MeterListener"/> / <see cref="ActivityListener"/> picks them up, and an <see cref="ILoggerFactory"/>
/// for the library's messages.
/// </summary>
/// <remarks>
/// Every SFT and RL step records, tagged <c>engine.phase</c> = "sft" or "rl": the gauges <c>engine.loss</c>,
/// <c>engine.grad_norm</c>, <c>engine.learning_rate</c>, <c>engine.tokens_per_second</c>; RL adds
/// <c>engine.rl.reward</c>, <c>engine.rl.accuracy</c>, <c>engine.rl.response_length</c>, <c>engine.rl.entropy</c>,
/// <c>engine.rl.kl</c> (tagged <c>engine.kl</c> = "approx" against the sampling policy, "reference" against the
/// frozen reference), <c>engine.rl.clip_fraction</c>, <c>engine.kv_cache.peak_bytes</c>; test accuracy
/// (<c>engine.test_accuracy</c>) when the step evaluated. The counters <c>engine.steps</c>,
/// <c>engine.steps.skipped</c> (non-finite steps), <c>engine.tokens.generated</c> and <c>engine.tokens.trained</c>
/// add up over a run. Activities: <c>engine.rl.step</c> around an RL step, <c>engine.sampling</c> around each
/// generation call, <c>engine.rl.scoring</c> around the rewards of a group, <c>engine.rl.update</c> around the
/// policy update.
/// </remarks>
public static class EngineTelemetry
{
    /// <summary>The name of the engine's meter and activity source.</summary>
    public const string Name = "Engine";

    private const string Phase = "engine.phase";
    private static readonly string? Version = typeof(EngineTelemetry).Assembly.GetName().Version?.ToString();
    private static readonly Meter Meter = new(Name, Version);
    private static readonly Gauge<double> Loss = Meter.CreateGauge<double>("engine.loss", null, "The step's training loss.");
    private static readonly Gauge<double> GradNorm = Meter.CreateGauge<double>("engine.grad_norm", null, "The gradient's L2 norm before clipping.");
    private static readonly Gauge<double> LearningRate = Meter.CreateGauge<double>("engine.learning_rate", null, "The step's learning rate.");
    private static readonly Gauge<double> TokensPerSecond = Meter.CreateGauge<double>("engine.tokens_per_second", "{token}/s", "Tokens sampled and trained per second of the step.");
    private static readonly Gauge<double> TestAccuracy = Meter.CreateGauge<double>("engine.test_accuracy", null, "Test accuracy when the step evaluated.");
    private static readonly Gauge<double> Reward = Meter.CreateGauge<double>("engine.rl.reward", null, "Mean reward of the step's responses.");
    private static readonly Gauge<double> Accuracy = Meter.CreateGauge<double>("engine.rl.accuracy", null, "Share of the step's responses that were correct.");
    private static readonly Gauge<double> ResponseLength = Meter.CreateGauge<double>("engine.rl.response_length", "{token}", "Mean response length.");
    private static readonly Gauge<double> Entropy = Meter.CreateGauge<double>("engine.rl.entropy", null, "Mean per-token policy entropy.");
    private static readonly Gauge<double> Kl = Meter.CreateGauge<double>("engine.rl.kl", null, "Mean per-token KL estimate (tag engine.kl: approx or reference).");
    private static readonly Gauge<double> ClipFraction = Meter.CreateGauge<double>("engine.rl.clip_fraction", null, "Share of tokens whose ratio was clipped (tag engine.clip: high or low).");
    private static readonly Gauge<long> PeakKvBytes = Meter.CreateGauge<long>("engine.kv_cache.peak_bytes", "By", "Peak KV-cache bytes in use while sampling the step.");
    private static readonly Counter<long> Steps = Meter.CreateCounter<long>("engine.steps", "{step}", "Steps taken.");
    private static readonly Counter<long> SkippedSteps = Meter.CreateCounter<long>("engine.steps.skipped", "{step}", "Steps skipped for a non-finite loss, gradient or reward.");
    private static readonly Counter<long> TokensGenerated = Meter.CreateCounter<long>("engine.tokens.generated", "{token}", "Tokens sampled.");
    private static readonly Counter<long> TokensTrained = Meter.CreateCounter<long>("engine.tokens.trained", "{token}", "Tokens trained on.");
    private static ILoggerFactory loggerFactory = NullLoggerFactory.Instance;
    private static ILogger logger = NullLogger.Instance;

    /// <summary>The engine's activity source (named <see cref="Name"/>).</summary>
    internal static ActivitySource Source { get; } = new(Name, Version);

    /// <summary>Where the library's log messages go (default: nowhere). Set it once, before training.</summary>
    public static ILoggerFactory LoggerFactory
    {
        get => loggerFactory;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            loggerFactory = value;
            logger = value.CreateLogger(Name);
        }
    }

    /// <summary>The engine's logger (category "Engine").</summary>
    internal static ILogger Logger => logger;

    /// <summary>Records an SFT step's metrics; returns them.</summary>
    internal static SftStepMetrics Publish(SftStepMetrics m)
    {
        Common("sft", m.Step, m.Loss, m.GradNorm, m.LearningRate, m.TokensPerSecond, m.TestAccuracy, m.Skipped);
        return m;
    }

    /// <summary>Records an RL step's metrics; returns them.</summary>
    internal static RlStepMetrics Publish(RlStepMetrics m)
    {
        var phase = Common("rl", m.Step, m.Loss, m.GradNorm, m.LearningRate, m.TokensPerSecond, m.TestAccuracy, m.Skipped);
        Reward.Record(m.RewardMean, phase);
        Accuracy.Record(m.Accuracy, phase);
        ResponseLength.Record(m.ResponseLength, phase);
        Entropy.Record(m.Entropy, phase);
        Kl.Record(m.ApproxKl, phase, new("engine.kl", "approx"));
        Kl.Record(m.RefKl, phase, new("engine.kl", "reference"));
        ClipFraction.Record(m.ClipFractionHigh, phase, new("engine.clip", "high"));
        ClipFraction.Record(m.ClipFractionLow, phase, new("engine.clip", "low"));
        PeakKvBytes.Record(m.PeakKvBytes, phase);
        TokensGenerated.Add(m.TokensGenerated, phase);
        TokensTrained.Add(m.TokensTrained, phase);
        return m;
    }

    /// <summary>What every step records; returns the phase tag.</summary>
    private static KeyValuePair<string, object?> Common(string phaseName, int step, double loss, double gradNorm, double learningRate,
        double tokensPerSecond, double? testAccuracy, string? skipped)
    {
        var phase = new KeyValuePair<string, object?>(Phase, phaseName);
        Loss.Record(loss, phase);
        GradNorm.Record(gradNorm, phase);
        LearningRate.Record(learningRate, phase);
        TokensPerSecond.Record(tokensPerSecond, phase);
        if (testAccuracy is double test)
        {
            TestAccuracy.Record(test, phase);
        }

        Steps.Add(1, phase);
        if (skipped is not null)
        {
            SkippedSteps.Add(1, phase);
            Log.StepSkipped(logger, phaseName, step, skipped);
        }

        return phase;
    }
}

/// <summary>The library's log messages (source-generated, so a disabled level costs nothing).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "{Phase} step {Step} skipped: {Reason}")]
    public static partial void StepSkipped(ILogger logger, string phase, int step, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "loaded {Directory} on {Device}: {Parameters} parameters")]
    public static partial void ModelLoaded(ILogger logger, string directory, string device, long parameters);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "saved {Directory} ({DType})")]
    public static partial void ModelSaved(ILogger logger, string directory, string dtype);
}
