using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Engine.Tests.Diagnostics;

/// <summary>
/// The engine's Meter and ActivitySource ("Engine") seen by a MeterListener and an ActivityListener, and its
/// log messages by an ILoggerFactory. Other tests run at the same time, so only what this test's thread records counts.
/// </summary>
public sealed class TelemetryTests
{
    [Fact]
    public void An_RL_step_publishes_its_metrics_and_phase_activities()
    {
        int thread = Environment.CurrentManagedThreadId;
        var measurements = new ConcurrentBag<(string Name, double Value, KeyValuePair<string, object?>[] Tags)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == EngineTelemetry.Name)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (Environment.CurrentManagedThreadId == thread)
            {
                measurements.Add((instrument.Name, value, tags.ToArray()));
            }
        }

        meters.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        meters.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        meters.Start();
        var activities = new ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == EngineTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (Environment.CurrentManagedThreadId == thread)
                {
                    activities.Add(a);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        var task = new RlSessions.SevenTask();
        using LanguageModel model = LanguageModel.CreateForTask(task, RlSessions.Shape);
        using RlSession session = model.StartRl(task, RlSessions.Tiny(RlOptions.Grpo()) with { Steps = 1 });
        RlStepMetrics step = session.Step();

        double Only(string name, string? tag = null, string? value = null) => Assert.Single(measurements,
            m => m.Name == name && m.Tags.Any(t => t.Key == "engine.phase" && (string?)t.Value == "rl")
                 && (tag is null || m.Tags.Any(t => t.Key == tag && (string?)t.Value == value))).Value;
        Assert.Equal(step.RewardMean, Only("engine.rl.reward"));
        Assert.Equal(step.Accuracy, Only("engine.rl.accuracy"));
        Assert.Equal(step.Loss, Only("engine.loss"));
        Assert.Equal(step.ApproxKl, Only("engine.rl.kl", "engine.kl", "approx"));
        Assert.Equal(step.TokensPerSecond, Only("engine.tokens_per_second"));
        Assert.Equal(step.PeakKvBytes, Only("engine.kv_cache.peak_bytes"));
        Assert.Equal(step.TokensGenerated, Only("engine.tokens.generated"));
        Assert.Equal(1, Only("engine.steps"));

        Activity root = Assert.Single(activities, a => a.OperationName == "engine.rl.step");
        var children = activities.Where(a => a.ParentSpanId == root.SpanId).Select(a => a.OperationName).ToHashSet();
        Assert.Contains("engine.sampling", children);
        Assert.Contains("engine.rl.scoring", children);
        Assert.Contains("engine.rl.update", children);
        Activity sampling = activities.First(a => a.OperationName == "engine.sampling" && a.ParentSpanId == root.SpanId);
        Assert.True((long)sampling.GetTagItem("engine.tokens_generated")! > 0);
    }

    [Fact]
    public void Library_messages_go_to_the_logger_factory()
    {
        int thread = Environment.CurrentManagedThreadId;
        var provider = new CapturingProvider(thread);
        using ILoggerFactory factory = provider;
        ILoggerFactory before = EngineTelemetry.LoggerFactory;
        EngineTelemetry.LoggerFactory = factory;
        try
        {
            using var dir = new TempDir();
            var task = new RlSessions.SevenTask();
            using (LanguageModel model = LanguageModel.CreateForTask(task, RlSessions.Shape))
            {
                model.Save(dir.Path);
            }

            using LanguageModel loaded = LanguageModel.Load(dir.Path, "cpu");
            Assert.Contains(provider.Messages, m => m.Category == EngineTelemetry.Name && m.Text.StartsWith($"saved {dir.Path}", StringComparison.Ordinal));
            Assert.Contains(provider.Messages, m => m.Text.StartsWith($"loaded {dir.Path}", StringComparison.Ordinal)
                                                   && m.Text.EndsWith($"{loaded.ParameterCount} parameters", StringComparison.Ordinal));
        }
        finally
        {
            EngineTelemetry.LoggerFactory = before;
        }
    }

    /// <summary>A logger factory that keeps the messages logged on one thread.</summary>
    private sealed class CapturingProvider(int thread) : ILoggerFactory
    {
        public int Thread { get; } = thread;

        public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

        public ConcurrentBag<(string Category, string Text)> Messages { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Capture(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Capture(CapturingProvider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (Environment.CurrentManagedThreadId == owner.Thread)
                {
                    owner.Messages.Add((category, formatter(state, exception)));
                }
            }
        }
    }
}
