using System.Diagnostics;

namespace Engine.Tests.Support;

/// <summary>Runs programs the way a user would (its own process, its own dependency graph).</summary>
internal static class ExternalProcess
{
    /// <summary>Runs <paramref name="file"/> and asserts exit code 0 within the time limit; returns its standard output.</summary>
    public static string Run(string file, string arguments, string directory, TimeSpan? limit = null)
    {
        var info = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        TimeSpan wait = limit ?? TimeSpan.FromMinutes(5);
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(wait), $"{file} {arguments} did not finish in {wait.TotalMinutes:F0} minutes");
        Assert.True(process.ExitCode == 0, $"{file} {arguments} failed ({process.ExitCode}):\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
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
