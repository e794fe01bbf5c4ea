namespace Engine.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        EngineTelemetry.LoggerFactory = StderrLogging.Instance;
        return CommandLine.Run(args);
    }
}
