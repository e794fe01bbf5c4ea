using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Tests.Model;
using Engine.Tests.Support;

namespace Engine.Tests.Cli;

/// <summary>`engine forward-backward`: the parity output, and a clear one-line error with nothing written for bad input.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class ForwardBackwardCliTests : IDisposable
{
    private readonly TempDir temp = new();

    [Fact]
    public void Writes_logits_loss_and_gradients_that_match_pytorch()
    {
        string fixture = PyTorchParityTests.FixturePath("gpt2_prefixed_sharded");
        string output = temp.File("out.safetensors");
        var (code, _, stderr) = CliRunner.Run("forward-backward", "--model", fixture, "--tokens",
            Path.Combine(fixture, "tokens.json"), "--out", output);
        Assert.True(code == 0, stderr);

        using var actual = SafeTensorsFile.Open(output);
        using var expected = SafeTensorsFile.Open(Path.Combine(fixture, "expected.safetensors"));
        Assert.Equal(expected.Tensors.Select(t => t.Name).Order(), actual.Tensors.Select(t => t.Name).Order());
        foreach (SafeTensorInfo info in expected.Tensors)
        {
            Assert.Equal(info.Shape, actual.GetInfo(info.Name).Shape);
            Compare.Close(expected.ReadAsFloat32(info.Name), actual.ReadAsFloat32(info.Name), PyTorchParityTests.Bound, info.Name);
        }

        Assert.Single(Directory.GetFiles(temp.Path));
    }

    [Fact]
    public void Truncated_model_file_is_rejected()
    {
        string model = CopyFixture("gpt2");
        string file = Path.Combine(model, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length / 2)]);
        AssertFailsCleanly(model, DefaultTokens("gpt2"), "model.safetensors");
    }

    [Fact]
    public void Header_length_past_the_end_is_rejected()
    {
        string model = CopyFixture("gpt2");
        string file = Path.Combine(model, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        BitConverter.GetBytes((ulong)bytes.Length * 2).CopyTo(bytes, 0);
        File.WriteAllBytes(file, bytes);
        AssertFailsCleanly(model, DefaultTokens("gpt2"), "header");
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        string model = RewriteModel("gpt2", (name, shape, data) => name == "h.1.mlp.c_fc.bias" ? null : (shape, data));
        AssertFailsCleanly(model, DefaultTokens("gpt2"), "missing tensor 'h.1.mlp.c_fc.bias'");
    }

    [Fact]
    public void Tensor_of_the_wrong_shape_is_named()
    {
        string model = RewriteModel("llama_gqa", (name, shape, data) =>
            name == "model.layers.0.self_attn.k_proj.weight" ? ([shape[1], shape[0]], data) : (shape, data));
        AssertFailsCleanly(model, DefaultTokens("llama_gqa"), "'model.layers.0.self_attn.k_proj.weight' has shape");
    }

    [Fact]
    public void Unknown_model_type_is_named()
    {
        string model = CopyFixture("qwen2_tied");
        string config = Path.Combine(model, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["model_type"] = "mamba";
        File.WriteAllText(config, json.ToJsonString());
        AssertFailsCleanly(model, DefaultTokens("qwen2_tied"), "unknown model_type 'mamba'");
    }

    [Fact]
    public void Token_id_out_of_range_is_named()
    {
        string model = PyTorchParityTests.FixturePath("gpt2");
        string tokens = temp.File("tokens.json");
        File.WriteAllText(tokens, "{\"input_ids\": [[1, 2, 3, 67]]}");
        AssertFailsCleanly(model, tokens, "token id 67");
    }

    [Fact]
    public void Sequence_longer_than_the_positions_is_named()
    {
        string model = PyTorchParityTests.FixturePath("gpt2");
        string tokens = temp.File("tokens.json");
        File.WriteAllText(tokens, "{\"input_ids\": [[" + string.Join(", ", Enumerable.Repeat(1, 17)) + "]]}");
        AssertFailsCleanly(model, tokens, "exceeds the model's 16 positions");
    }

    [Fact]
    public void Malformed_tokens_file_is_named()
    {
        string model = PyTorchParityTests.FixturePath("gpt2");
        string tokens = temp.File("tokens.json");
        File.WriteAllText(tokens, "{\"input_ids\": [[1, 2], [3]]}");
        AssertFailsCleanly(model, tokens, "same length");
    }

    public void Dispose() => temp.Dispose();

    private void AssertFailsCleanly(string model, string tokens, string expectedMessage)
    {
        string output = temp.File("result.safetensors");
        var (code, stdout, stderr) = CliRunner.Run("forward-backward", "--model", model, "--tokens", tokens, "--out", output);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        string line = stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', line);
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains(expectedMessage, line, StringComparison.Ordinal);
        Assert.False(File.Exists(output), "no output may be written on failure");
        Assert.Empty(Directory.GetFiles(temp.Path, "*result*"));
    }

    private static string DefaultTokens(string fixture) => Path.Combine(PyTorchParityTests.FixturePath(fixture), "tokens.json");

    private string CopyFixture(string fixture)
    {
        string source = PyTorchParityTests.FixturePath(fixture);
        string target = Path.Combine(temp.Path, fixture);
        Directory.CreateDirectory(target);
        foreach (string file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        return target;
    }

    /// <summary>Copies a single-file fixture, transforming (or dropping, with null) each tensor.</summary>
    private string RewriteModel(string fixture, Func<string, int[], float[], (int[] Shape, float[] Data)?> edit)
    {
        string target = CopyFixture(fixture);
        string file = Path.Combine(target, "model.safetensors");
        var writer = new SafeTensorsWriter();
        using (var source = SafeTensorsFile.Open(file))
        {
            foreach (SafeTensorInfo info in source.Tensors)
            {
                var edited = edit(info.Name, info.ShapeArray(), source.ReadAsFloat32(info.Name));
                if (edited is { } e)
                {
                    writer.Add(info.Name, e.Shape, e.Data);
                }
            }
        }

        writer.Write(file);
        return target;
    }
}
