using Engine.Core;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Packaging;

/// <summary>
/// The library as an embedding app sees it: pack it with `dotnet pack`, reference the package from
/// a local folder in a console app outside the solution, and run an SFT step, a sampling call and
/// an RL step through the public API only.
/// </summary>
public sealed class EmbeddingPackageTests(ITestOutputHelper output)
{
    private const string Program = """
        using Engine;

        ITask task = BuiltInTasks.Create("addition", seed: 3, new Dictionary<string, string> { ["max_digits"] = "2" });
        using LanguageModel model = LanguageModel.CreateForTask(task, new ModelOptions { Layers = 1, Dim = 32, Heads = 2, MaxPositions = 16 });
        Console.WriteLine($"device {model.Device.Spec}, {model.ParameterCount} parameters");
        Console.WriteLine($"devices: {string.Join(", ", Devices.List().Select(d => d.Spec))}");

        using (SftSession sft = model.StartSft(task, new SftOptions { Steps = 2, BatchSize = 8, EvalExamples = 4 }))
        {
            SftStepMetrics s = sft.Step();
            Console.WriteLine($"sft step {s.Step} loss {s.Loss:F4}");
        }

        var groups = model.Generate(["12+34="], 3, new SamplingOptions { MaxNewTokens = 4, Seed = 7 });
        Console.WriteLine($"sampled {groups[0].Samples.Count} responses: {string.Join(" | ", groups[0].Samples.Select(x => x.Text))}");

        using (RlSession rl = model.StartRl(task, RlOptions.Dapo() with
        {
            Steps = 1, PromptsPerStep = 2, SamplesPerPrompt = 4, MaxNewTokens = 4, OverlongBuffer = 1, EvalEvery = 0,
            KvCacheMb = 8, MaxConcurrentSequences = 8,
        }))
        {
            RlStepMetrics r = rl.Step();
            Console.WriteLine($"rl step {r.Step} reward {r.RewardMean:F3} groups {r.GroupsKept}/{r.GroupsGenerated}");
        }

        Console.WriteLine("EMBEDDING-OK");
        """;

    [Fact]
    public void A_console_app_uses_the_packed_library_through_its_public_api()
    {
        string repo = ExternalProcess.RepoRoot();
        using var temp = new TempDir();
        string version = $"0.0.0-test{DateTime.UtcNow:yyyyMMddHHmmssfff}";
        string feed = Path.Combine(temp.Path, "feed");
        ExternalProcess.Run("dotnet", $"pack \"{Path.Combine(repo, "src", "Engine", "Engine.csproj")}\" -c Release -o \"{feed}\" -p:Version={version}", repo);
        string package = Path.Combine(feed, $"Engine.{version}.nupkg");
        Assert.True(File.Exists(package), "dotnet pack produced no package");
        using (var zip = System.IO.Compression.ZipFile.OpenRead(package))
        {
            // The GPU backends are plug-ins the engine does not reference: the package must carry them all the same.
            string[] libraries = [.. zip.Entries.Select(e => e.FullName).Where(n => n.StartsWith("lib/", StringComparison.Ordinal))];
            foreach (string backend in new[] { "Cpu", "Gpu", "OpenCL", "Cuda" })
            {
                Assert.Contains($"lib/net10.0/Engine.Kernels.{backend}.dll", libraries);
            }
        }

        string app = Path.Combine(temp.Path, "app");
        Directory.CreateDirectory(app);
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Engine" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), Program);
        try
        {
            string stdout = ExternalProcess.Run("dotnet", "run -c Release", app);
            output.WriteLine(stdout);
            Assert.Contains("EMBEDDING-OK", stdout, StringComparison.Ordinal);
            Assert.Contains("sft step 1", stdout, StringComparison.Ordinal);
            Assert.Contains("sampled 3 responses", stdout, StringComparison.Ordinal);
            Assert.Contains("rl step 1", stdout, StringComparison.Ordinal);
            // The app found the plug-ins the package carries next to Engine.dll: every device this process sees, it sees.
            foreach (DeviceInfo device in Devices.List())
            {
                Assert.Contains(device.Spec, stdout.Split('\n').Single(l => l.StartsWith("devices: ", StringComparison.Ordinal)), StringComparison.Ordinal);
            }
        }
        finally
        {
            string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                                         ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "engine", version);
            if (Directory.Exists(cached))
            {
                Directory.Delete(cached, recursive: true);
            }
        }
    }
}
