using System.Diagnostics;

namespace Engine.Tests.Support;

/// <summary>Runs programs the way a user would (its own process, its own dependency graph).</summary>
internal static class ExternalProcess
{
    /// <summary>
    /// Runs <paramref name="file"/> and asserts exit code 0 within the time limit; returns its standard output.
    /// <paramref name="environment"/> adds variables for the child alone (e.g. DOTNET_EnableAVX512=0).
    /// </summary>
    public static string Run(string file, string arguments, string directory, TimeSpan? limit = null,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        TimeSpan wait = limit ?? TimeSpan.FromMinutes(5);
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(wait), $"{file} {arguments} did not finish in {wait.TotalMinutes:F0} minutes");
        Assert.True(process.ExitCode == 0, $"{file} {arguments} failed ({process.ExitCode}):\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }

    /// <summary>The built CLI (Engine.Cli.dll) of the test binaries' configuration; asserts that it exists.</summary>
    public static string BuiltCli()
    {
        string testBin = AppContext.BaseDirectory; // .../tests/Engine.Tests/bin/<Configuration>/<tfm>/
        string tfm = Path.GetFileName(Path.TrimEndingDirectorySeparator(testBin));
        string configuration = Path.GetFileName(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(testBin))!);
        string cli = Path.Combine(RepoRoot(), "src", "Engine.Cli", "bin", configuration, tfm, "Engine.Cli.dll");
        Assert.True(File.Exists(cli), $"the CLI is not built at {cli}");
        return cli;
    }

    /// <summary>The repository root: the folder above the test binaries that holds Engine.sln.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("the repository root (Engine.sln) was not found above the test binaries");
    }
}
