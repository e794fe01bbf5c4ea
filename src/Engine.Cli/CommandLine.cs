using System.CommandLine;

namespace Engine.Cli;

/// <summary>The `engine` command tree; each command lives in its own file.</summary>
internal static class CommandLine
{
    public static int Run(string[] args)
    {
        var root = new RootCommand("engine: post-train transformer language models with reinforcement learning");
        return root.Parse(args).Invoke();
    }
}
