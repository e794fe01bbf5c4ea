using Microsoft.Extensions.Logging;

namespace Engine.Cli;

/// <summary>
/// The library's warnings and errors (e.g. a step skipped for a non-finite loss) as "warning: ..." lines on
/// standard error, so the CLI shows them without a logging framework; informational messages stay quiet.
/// </summary>
internal sealed class StderrLogging : ILoggerFactory, ILogger
{
    public static readonly StderrLogging Instance = new();

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the CLI logs to standard error only");

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            Console.Error.WriteLine($"{(logLevel >= LogLevel.Error ? "error" : "warning")}: {formatter(state, exception)}");
        }
    }

    public void Dispose()
    {
    }
}
