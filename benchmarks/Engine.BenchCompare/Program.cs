namespace Engine.BenchCompare;

/// <summary>Entry point; see <see cref="CompareCommand"/>.</summary>
internal static class Program
{
    private static int Main(string[] args) => CompareCommand.Run(args, Console.Out);
}
