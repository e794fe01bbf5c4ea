using System.Text.Json.Nodes;
using Engine.Pike;
using Engine.Tests.Cli;

namespace Engine.Tests.Pike;

/// <summary>Multi-task SFT from the command line: <c>engine sft --task ... --mixer</c>, <c>--mix FILE</c>, and its errors.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class PikeCliTests
{
    [Fact]
    public void Sft_mixes_the_tasks_logs_weights_and_shares_and_reports_each_task()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var (code, _, err) = CliRunner.Run("sft", "--task", "a=addition:max_digits=1", "--task", "s=sorting:min_length=2,max_length=3",
            "--mixer", "balanced-pike", "--mix-update-every", "2", "--mix-zeta1", "0.5", "--steps", "3", "--batch-size", "6", "--eval-examples", "4",
            "--model-dim", "16", "--model-layers", "1", "--model-heads", "2", "--model-max-positions", "16", "--out", run);
        Assert.True(code == 0, err);
        JsonObject[] lines = [.. File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject())];
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Equal(6, (int)l["mix_batch_a"]! + (int)l["mix_batch_s"]!));
        Assert.NotNull(lines[0]["mix_grad_sq_a"]);
        Assert.NotNull(lines[0]["mix_y_s"]);
        Assert.NotNull(lines[0]["mix_cosine_mean"]);
        Assert.Null(lines[1]["mix_grad_sq_a"]);
        JsonObject summary = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "summary.json")))!.AsObject();
        Assert.NotNull(summary["mix_accuracy_after_sft"]!["s"]);
        Assert.Contains("balanced-pike", File.ReadAllText(Path.Combine(run, "config.json")), StringComparison.Ordinal);
        Assert.Contains("Mixture weights w_k", File.ReadAllText(Path.Combine(run, "report.html")), StringComparison.Ordinal);
    }

    [Fact]
    public void A_mix_file_with_a_missing_task_file_is_a_one_line_error_naming_it()
    {
        using var dir = new TempDir();
        string mix = dir.File("mix.txt");
        File.WriteAllLines(mix, ["# tasks", "addition:max_digits=1", dir.File("absent.jsonl")]);
        var (code, _, err) = CliRunner.Run("sft", "--mix", mix, "--steps", "1", "--out", dir.File("run"));
        Assert.Equal(1, code);
        Assert.Contains("absent.jsonl", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliRunner.Run("sft", "--mixer", "pike", "--steps", "1", "--out", dir.File("run2"));
        Assert.Equal(1, code);
        Assert.Contains("--task", err, StringComparison.Ordinal);
    }
}

/// <summary>The experiment's output shape (a reduced run).</summary>
public sealed class PikeExperimentTests
{
    [Fact]
    public void The_experiment_writes_the_summary_shape_and_the_report()
    {
        using var dir = new TempDir();
        var summary = PikeExperiment.Run(new PikeExperimentOptions { Seeds = [1, 2], OutDir = dir.Path, Quick = true, Steps = 3 });
        JsonObject written = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "summary.json")))!.AsObject();
        Assert.Equal(summary.ToJsonString(), written.ToJsonString());
        foreach (string arm in new[] { "uniform", "pike", "balanced_pike" })
        {
            JsonObject a = written["arms"]![arm]!.AsObject();
            double avg1 = (double)a["per_seed"]!["1"]!["avg"]!, avg2 = (double)a["per_seed"]!["2"]!["avg"]!;
            Assert.Equal((avg1 + avg2) / 2, (double)a["mean_avg"]!, 5);
            JsonObject perTask = a["per_seed"]!["1"]!["per_task"]!.AsObject();
            Assert.Equal(["easy", "add2", "sort", "noisy"], perTask.Select(kv => kv.Key));
            Assert.Equal(perTask.Min(kv => (double)kv.Value!), (double)a["per_seed"]!["1"]!["worst"]!, 5);
            Assert.NotNull(a["mean_worst"]);
        }

        string html = File.ReadAllText(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("Task weights w_k: pike", html, StringComparison.Ordinal);
        Assert.Contains("Worst task test accuracy", html, StringComparison.Ordinal);
    }
}
