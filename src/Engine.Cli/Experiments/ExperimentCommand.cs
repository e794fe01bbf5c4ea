using System.CommandLine;

namespace Engine.Cli.Experiments;

/// <summary>
/// <c>engine experiment &lt;name&gt;</c>: each post-training method's reproduction of its paper's claim
/// on a built-in task, over several seeds, with <c>--quick</c> for CI. One subcommand per method, each in
/// a file of its own in this folder.
/// </summary>
internal static class ExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("experiment", "Reproduce a post-training method's published claim in shape on a built-in task, over several seeds.");
        foreach (Command method in Methods())
        {
            command.Subcommands.Add(method);
        }

        return command;
    }

    /// <summary>One line per method: its subcommand.</summary>
    private static IEnumerable<Command> Methods()
    {
        yield return KdrlExperimentCommand.Create();
        yield return MixedPolicyExperimentCommand.Create();
        yield return OfflineDistillCommand.Create();
        yield return PikeExperimentCommand.Create();
    }
}
