using System.Text.Json.Nodes;
using Engine.Core;
using Engine.IO;
using Engine.Model;
using Engine.Runs;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Tests.Model;

/// <summary>Checkpoints other tools can load: tokenizer files, the original config keys, the save dtype, large flat buffers.</summary>
public sealed class CheckpointFilesTests : IDisposable
{
    private readonly TempDir temp = new();

    public void Dispose() => temp.Dispose();

    /// <summary>A copy of the qwen2_tied fixture with extra config keys and tokenizer files.</summary>
    private string SourceModel(bool withTokenizer = true)
    {
        string dir = temp.File("source");
        Directory.CreateDirectory(dir);
        string fixture = PyTorchParityTests.FixturePath("qwen2_tied");
        File.Copy(Path.Combine(fixture, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "config.json")))!.AsObject();
        config["rope_scaling"] = new JsonObject { ["rope_type"] = "default", ["factor"] = 1.0 };
        config["my_custom_key"] = new JsonArray(1, 2, 3);
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        if (withTokenizer)
        {
            new CharTokenizer("abc").Save(Path.Combine(dir, "tokenizer.json"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"chat_template": "{{ '<|im_start|>' }}{{ '<|im_end|>' }}"}""");
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"temperature": 0.7}""");
        }

        return dir;
    }

    /// <summary>Round to nearest even to the top 16 bits (bfloat16), independently of the writer.</summary>
    private static float Bf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000);
    }

    [Fact]
    public void A_training_checkpoint_keeps_config_keys_tokenizer_files_and_saves_bf16_with_exact_params_for_resume()
    {
        string source = SourceModel();
        using var acc = TestDevices.Cpu();
        LoadedModel loaded = HfCheckpoint.Load(acc, source);
        using Transformer model = loaded.Model;
        using var optimizer = new AdamWOptimizer(model, new AdamWOptions());
        string checkpoint = temp.File("ckpt");
        TrainingCheckpoint.Save(checkpoint, model, optimizer, new JsonObject { ["phase"] = "sft", ["step"] = 1 },
            path => ModelFiles.CopyTokenizerFiles(source, Path.GetDirectoryName(path)!), originalConfig: loaded.ConfigJson,
            dtype: SafeTensorsDType.BF16);

        string modelDir = Path.Combine(checkpoint, "model");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "config.json")))!.AsObject();
        Assert.Equal("[1,2,3]", config["my_custom_key"]!.ToJsonString());
        Assert.Equal("default", (string?)config["rope_scaling"]!["rope_type"]);
        Assert.Equal("bfloat16", (string?)config["torch_dtype"]);
        foreach (string name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
        {
            Assert.Equal(File.ReadAllText(Path.Combine(source, name)), File.ReadAllText(Path.Combine(modelDir, name)));
        }

        float[] original = acc.ToArray(model.Params.All);
        using (var saved = SafeTensorsFile.Open(Path.Combine(modelDir, "model.safetensors")))
        {
            Assert.All(saved.Tensors, t => Assert.Equal(SafeTensorsDType.BF16, t.DType));
        }

        // model/ loads elsewhere as the bf16-rounded weights ...
        using (Transformer reloaded = HfCheckpoint.Load(acc, modelDir).Model)
        {
            Assert.Equal(original.Select(Bf16), acc.ToArray(reloaded.Params.All));
        }

        // ... while resuming restores the exact parameters.
        acc.Upload(model.Params.All, new float[original.Length]);
        TrainingCheckpoint.Load(checkpoint, model, optimizer);
        Assert.Equal(original, acc.ToArray(model.Params.All));
    }

    [Fact]
    public void Flat_buffers_are_written_in_chunks_and_read_back_exactly()
    {
        using var acc = TestDevices.Cpu();
        using Transformer model = HfCheckpoint.Load(acc, PyTorchParityTests.FixturePath("qwen2_tied")).Model;
        float[] values = TestData.Uniform(5, model.Layout.TotalLength);
        acc.Upload(model.Params.All, values);
        var writer = new SafeTensorsWriter();
        TrainingCheckpoint.AddFlat(writer, "params", model.Params, model, chunkElements: 1000);
        string path = temp.File("flat.safetensors");
        writer.Write(path);
        acc.Upload(model.Params.All, new float[values.Length]);
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal((int)((values.Length + 999) / 1000), file.Tensors.Count);
            TrainingCheckpoint.ReadFlat(file, "params", model.Params, model);
        }

        Assert.Equal(values, acc.ToArray(model.Params.All));
    }

    [Fact]
    public void A_model_directory_without_a_tokenizer_is_named_and_no_checkpoint_is_half_written()
    {
        string source = SourceModel(withTokenizer: false);
        var e = Assert.Throws<EngineException>(() => ModelFiles.RequireTokenizer(source));
        Assert.Equal($"{source}: no tokenizer.json (a model directory needs its tokenizer files; copy tokenizer.json and tokenizer_config.json from the model it came from)", e.Message);

        using var acc = TestDevices.Cpu();
        using Transformer model = HfCheckpoint.Load(acc, source).Model;
        using var optimizer = new AdamWOptimizer(model, new AdamWOptions());
        string checkpoint = temp.File("ckpt");
        Assert.Throws<EngineException>(() => TrainingCheckpoint.Save(checkpoint, model, optimizer, new JsonObject(),
            path => ModelFiles.CopyTokenizerFiles(source, Path.GetDirectoryName(path)!)));
        Assert.Equal(["source"], Directory.GetFileSystemEntries(temp.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void A_qwen3_checkpoint_saves_and_loads_back_with_its_q_k_norms()
    {
        using var acc = TestDevices.Cpu();
        LoadedModel loaded = HfCheckpoint.Load(acc, PyTorchParityTests.FixturePath("qwen3_tied"));
        using Transformer model = loaded.Model;
        Assert.True(model.Config.QkNorm);
        Assert.Equal((8, 32, 24), (model.Config.HeadDim, model.Config.AttnDim, model.Config.Dim));
        string dir = temp.File("qwen3");
        HfCheckpoint.Save(model, dir, loaded.ConfigJson);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        Assert.Equal(("qwen3", "Qwen3ForCausalLM", false, 8), ((string?)config["model_type"], (string?)config["architectures"]![0],
            (bool)config["attention_bias"]!, (int)config["head_dim"]!));
        using Transformer reloaded = HfCheckpoint.Load(acc, dir).Model;
        Assert.Equal(model.Config, reloaded.Config with { EosTokenIds = model.Config.EosTokenIds });
        Assert.Equal(acc.ToArray(model.Params.All), acc.ToArray(reloaded.Params.All));
    }

    [Fact]
    public void Save_types_are_named()
    {
        Assert.Equal(SafeTensorsDType.F16, ModelFiles.ParseSaveType("fp16"));
        Assert.Equal("save dtype \"int8\" is not one of: f32, bf16, f16",
            Assert.Throws<EngineException>(() => ModelFiles.ParseSaveType("int8")).Message);
    }
}
