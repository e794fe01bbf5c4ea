using System.Text.Json.Nodes;
using Engine.Core;
using Engine.Tests.Cli;

namespace Engine.Tests.Config;

/// <summary>Every hyper-parameter is settable from a config file and the command line, with clear errors.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class ConfigTests : IDisposable
{
    private readonly TempDir temp = new();

    [Fact]
    public void A_config_file_sets_every_section()
    {
        string file = Write("""
            {"task": {"name": "sorting", "parameters": "min_length=2,max_length=4"}, "model": {"layers": 3, "dim": 64},
             "sft": {"steps": 7, "learning_rate": 0.01}, "rl": {"eps_high": 0.3, "loss_aggregation": "seq-mean-token-sum-norm", "dynamic_sampling": false},
             "device": "cpu"}
            """);
        RunOptions o = RunOptions.FromFile(file);
        Assert.Equal("sorting", o.Task.Name);
        Assert.Equal(3, o.Model.Layers);
        Assert.Equal(7, o.Sft!.Steps);
        Assert.Equal(0.01f, o.Sft.LearningRate);
        Assert.Equal(0.3f, o.Rl!.EpsHigh);
        Assert.False(o.Rl.DynamicSampling);
        Assert.Equal(LossAggregation.SeqMeanTokenSumNorm, o.Rl.LossAggregation);
        o.Validate();
    }

    [Theory]
    [InlineData("""{"rl": {"eps_hihg": 0.3}}""", "unknown setting 'eps_hihg' (did you mean 'eps_high'?)")]
    [InlineData("""{"rl": {"eps_high": "big"}}""", "setting 'eps_high' must be a number")]
    [InlineData("""{"rl": {"steps": 2.5}}""", "setting 'steps' must be an integer")]
    [InlineData("""{"sft": {"steps": true}}""", "setting 'steps' must be an integer")]
    [InlineData("""{"rl": {"dynamic_sampling": 1}}""", "setting 'dynamic_sampling' must be true or false")]
    [InlineData("""{"training": {}}""", "unknown section 'training'")]
    [InlineData("""{"rl": 3}""", "'rl' must be an object")]
    [InlineData("""{"rl": {"eps_low"}""", "invalid JSON")]
    public void Wrong_names_and_types_are_named(string json, string message)
    {
        string file = Write(json);
        var e = Assert.Throws<EngineException>(() => RunOptions.FromFile(file));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"rl": {"top_p": 1.5}}""", "top_p must be in (0, 1]")]
    [InlineData("""{"rl": {"eps_low": 1.2}}""", "eps_low must be in")]
    [InlineData("""{"rl": {"samples_per_prompt": 0}}""", "samples_per_prompt must be at least 1")]
    [InlineData("""{"rl": {"dual_clip": 0.5}}""", "dual_clip must be 0 (off) or greater than 1")]
    [InlineData("""{"sft": {"learning_rate": -1}}""", "learning_rate must be a positive number")]
    [InlineData("""{"task": {"name": "chess"}}""", "unknown task")]
    public void Values_out_of_range_are_named(string json, string message)
    {
        RunOptions o = RunOptions.FromFile(Write(json));
        var e = Assert.Throws<EngineException>(o.Validate);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"rl": {"loss_aggregation": "mean"}}""", "'loss_aggregation' must be token-mean, seq-mean-token-mean or seq-mean-token-sum-norm, got \"mean\"")]
    [InlineData("""{"rl": {"kl_estimator": "k4"}}""", "'kl_estimator' must be k1, k2 or k3, got \"k4\"")]
    [InlineData("""{"rl": {"kl_estimator": 2}}""", "'kl_estimator' must be k1, k2 or k3, got 2")]
    public void Enum_settings_are_their_names(string json, string message)
    {
        var e = Assert.Throws<EngineException>(() => RunOptions.FromFile(Write(json)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        RunOptions o = RunOptions.FromFile(Write("""{"rl": {"loss_aggregation": "seq-mean-token-sum-norm", "kl_estimator": "k1"}}"""));
        Assert.Equal((LossAggregation.SeqMeanTokenSumNorm, Engine.Core.KlEstimator.K1), (o.Rl!.LossAggregation, o.Rl.KlEstimator));
    }

    [Theory]
    [InlineData("""{"rl": {"advantage": "zero"}}""", "'advantage' must be group or none, got \"zero\"")]
    [InlineData("""{"rl": {"sampler": "fastest"}}""", "'sampler' must be full, micro, continuous or infinite, got \"fastest\"")]
    [InlineData("""{"kd": {"schedule": "cosine"}}""", "'schedule' must be constant or anneal, got \"cosine\"")]
    [InlineData("""{"kd": {"mask": "all"}}""", "'mask' must be none, response or group, got \"all\"")]
    [InlineData("""{"guide": {"weight": "tilt"}}""", "'weight' must be clip or shaping, got \"tilt\"")]
    [InlineData("""{"guide": {"decay_target": "both"}}""", "'decay_target' must be weight or samples, got \"both\"")]
    [InlineData("""{"mix": {"tasks": "addition;sorting", "mixer": "pike2"}}""", "'mixer' must be uniform, pike or balanced-pike, got \"pike2\"")]
    [InlineData("""{"task": {"on_malformed": "ignore"}}""", "'on_malformed' must be fail or skip, got \"ignore\"")]
    public void The_other_enum_settings_name_their_choices(string json, string message)
    {
        var e = Assert.Throws<EngineException>(() => RunOptions.FromFile(Write(json)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Enum_settings_round_trip_through_config_files_as_their_kebab_case_names()
    {
        // Written by hand, not by the code under test: each enum setting at a value other than its default.
        JsonObject written = JsonNode.Parse("""
            {"task": {"on_malformed": "skip"}, "rl": {"advantage": "none", "sampler": "infinite"},
             "kd": {"schedule": "anneal", "mask": "response"}, "guide": {"weight": "shaping", "decay_target": "samples"},
             "mix": {"tasks": "addition;sorting", "mixer": "balanced-pike"}}
            """)!.AsObject();
        RunOptions o = RunOptions.FromFile(Write(written.ToJsonString()));
        Assert.Equal(MalformedRowPolicy.Skip, o.Task.OnMalformed);
        Assert.Equal((AdvantageEstimator.None, SamplerKind.Infinite), (o.Rl!.Advantage, o.Rl.Sampler));
        Assert.Equal((KdSchedule.Anneal, KdMask.Response), (o.Rl.Distillation!.Schedule, o.Rl.Distillation.Mask));
        Assert.Equal((OffPolicyWeighting.Shaping, GuideDecayTarget.Samples), (o.Rl.Guidance!.Weight, o.Rl.Guidance.DecayTarget));
        Assert.Equal(MixerKind.BalancedPike, o.Mix!.Mixer);
        JsonObject resolved = o.ToJson();
        foreach (var (section, settings) in written)
        {
            foreach (var (key, value) in settings!.AsObject())
            {
                Assert.Equal(value!.ToJsonString(), resolved[section]![key]!.ToJsonString());
            }
        }

        Assert.Equal(o.ToJsonString(), RunOptions.FromFile(Write(o.ToJsonString())).ToJsonString());
    }

    [Fact]
    public void Presets_switch_each_dapo_technique_on_its_own()
    {
        RlOptions[] ladder = Enumerable.Range(0, 6).Select(RlOptions.Ladder).ToArray();
        Assert.Equal(RlOptions.Grpo(), ladder[0]);
        Assert.Equal(RlOptions.Dapo(), ladder[5]);
        Assert.False(ladder[0].OverlongFiltering || ladder[0].SoftOverlongPunishment || ladder[0].DynamicSampling);
        Assert.Equal(0.2f, ladder[0].EpsHigh);
        Assert.Equal(LossAggregation.SeqMeanTokenMean, ladder[0].LossAggregation);
        Assert.True(ladder[1].OverlongFiltering);
        Assert.Equal(0.28f, ladder[2].EpsHigh);
        Assert.True(ladder[3].SoftOverlongPunishment);
        Assert.Equal(LossAggregation.TokenMean, ladder[4].LossAggregation);
        Assert.True(ladder[5].DynamicSampling);
        Assert.Equal(0f, ladder[5].KlCoef);
    }

    [Fact]
    public void The_cli_rejects_a_bad_flag_value_in_one_line()
    {
        var (code, _, stderr) = CliRunner.Run("rl", "--eps-high", "wide", "--out", temp.File("run"));
        Assert.Equal(1, code);
        Assert.StartsWith("error: --eps-high: expected a number, got 'wide'", stderr.Trim(), StringComparison.Ordinal);
        var (code2, _, stderr2) = CliRunner.Run("demo", "--set", "rl.eps_hihg=0.3", "--out", temp.File("run2"));
        Assert.Equal(1, code2);
        Assert.Contains("unknown setting 'eps_hihg' (did you mean 'eps_high'?)", stderr2, StringComparison.Ordinal);
        var (code3, _, stderr3) = CliRunner.Run("rl", "--algo", "ppo", "--out", temp.File("run3"));
        Assert.Equal(1, code3);
        Assert.Contains("--algo must be grpo, dapo, ladder-0 .. ladder-5", stderr3, StringComparison.Ordinal);
        var (code4, _, stderr4) = CliRunner.Run("rl", "--algo", "ladder-6", "--out", temp.File("run4"));
        Assert.Equal(1, code4);
        Assert.Contains("the ablation ladder has stages 0..5, got 6", stderr4, StringComparison.Ordinal);
    }

    /// <summary>A config file for one RL step of a one-layer model on one-digit addition.</summary>
    private const string OneTinyRlStep = """
        {"rl": {"steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "eval_examples": 2, "eval_every": 0, "kv_cache_mb": 8},
         "model": {"layers": 1, "dim": 16, "heads": 2, "max_positions": 12}, "task": {"parameters": "max_digits=1"}}
        """;

    [Fact]
    public void The_cli_starts_rl_from_a_rung_of_the_ablation_ladder()
    {
        string file = Write(OneTinyRlStep);
        string run = temp.File("ladder");
        var (code, _, stderr) = CliRunner.Run("rl", "--algo", "ladder-2", "--config", file, "--out", run);
        Assert.True(code == 0, stderr);
        JsonNode rl = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!["rl"]!;
        Assert.Equal("ladder-2", (string)rl["algorithm"]!);
        Assert.True((bool)rl["overlong_filtering"]!);
        Assert.Equal(0.28, (double)rl["eps_high"]!, 5);
        Assert.False((bool)rl["soft_overlong_punishment"]!);
        Assert.Equal("seq-mean-token-mean", (string)rl["loss_aggregation"]!);
    }

    [Fact]
    public void Cli_flags_override_the_config_file()
    {
        string file = Write(OneTinyRlStep);
        string run = temp.File("flags");
        var (code, stdout, stderr) = CliRunner.Run("rl", "--config", file, "--eps-high", "0.35", "--out", run);
        Assert.True(code == 0, stderr);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!;
        Assert.Equal(0.35, (double)config["rl"]!["eps_high"]!, 5);
        Assert.Equal(2, (int)config["rl"]!["prompts_per_step"]!);
        Assert.Contains("report:", stdout, StringComparison.Ordinal);
    }

    public void Dispose() => temp.Dispose();

    private string Write(string json)
    {
        string path = temp.File($"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }
}
