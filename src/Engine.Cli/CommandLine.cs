using System.CommandLine;
using Engine.Core;

namespace Engine.Cli;

/// <summary>The `engine` command tree; each command lives in its own file.</summary>
internal static class CommandLine
{
    public static int Run(string[] args)
    {
        var root = new RootCommand("engine: post-train transformer language models with reinforcement learning")
        {
            ForwardBackwardCommand.Create(),
            BenchTrainCommand.Create(),
            RunCommands.Demo(),
            RunCommands.Sft(),
            RunCommands.Rl(),
            GenerateCommand.Create(),
            BenchGenerateCommand.Create(),
            BenchSamplingCommand.Create(),
            BenchAllReduceCommand.Create(),
            Experiments.ExperimentCommand.Create(),
            OfflineCommand.Create(),
            CheckBackendsCommand.Create(),
            BenchGemmCommand.Create(),
            BenchBandwidthCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }

    /// <summary>
    /// Runs a command body, turning failures into one line on stderr and a non-zero exit code:
    /// 1 for bad input (<see cref="EngineException"/>, I/O and format errors), 2 for anything else.
    /// </summary>
    public static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (EngineException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or FormatException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: internal failure: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("ENGINE_DEBUG") == "1")
            {
                Console.Error.WriteLine(e);
            }
            return 2;
        }
    }
}
