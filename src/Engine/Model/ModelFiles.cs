using Engine.Core;
using Engine.IO;

namespace Engine.Model;

/// <summary>
/// The files besides the weights that make a checkpoint usable elsewhere (tokenizer, chat template,
/// generation settings), and the element types weights can be saved in.
/// </summary>
internal static class ModelFiles
{
    /// <summary>Files copied from the model a run started from into each checkpoint, when present.</summary>
    public static readonly string[] TokenizerFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
        "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "generation_config.json",
    ];

    /// <summary>The save types: f32, bf16, f16.</summary>
    public static readonly string[] SaveTypes = ["f32", "bf16", "f16"];

    /// <summary>Reads a save type name ("f32", "bf16", "f16"; also "float32", "bfloat16", "float16").</summary>
    public static SafeTensorsDType ParseSaveType(string name) => name.Trim().ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => SafeTensorsDType.F32,
        "bf16" or "bfloat16" => SafeTensorsDType.BF16,
        "f16" or "float16" or "fp16" => SafeTensorsDType.F16,
        _ => throw new EngineException($"save dtype \"{name}\" is not one of: {string.Join(", ", SaveTypes)}"),
    };

    /// <summary>The config.json torch_dtype of a save type.</summary>
    public static string TorchDType(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.BF16 => "bfloat16",
        SafeTensorsDType.F16 => "float16",
        _ => "float32",
    };

    /// <summary>
    /// Copies the tokenizer files of <paramref name="sourceDirectory"/> into <paramref name="destinationDirectory"/>
    /// (each written atomically). Throws when the source has no tokenizer.json: a checkpoint without
    /// its tokenizer cannot be used elsewhere.
    /// </summary>
    public static void CopyTokenizerFiles(string sourceDirectory, string destinationDirectory)
    {
        RequireTokenizer(sourceDirectory);
        Directory.CreateDirectory(destinationDirectory);
        foreach (string name in TokenizerFiles)
        {
            string source = Path.Combine(sourceDirectory, name);
            if (File.Exists(source))
            {
                AtomicFile.Write(Path.Combine(destinationDirectory, name), stream =>
                {
                    using FileStream input = File.OpenRead(source);
                    input.CopyTo(stream);
                });
            }
        }
    }

    /// <summary>Throws a one-line error when <paramref name="directory"/> has no tokenizer.json.</summary>
    public static void RequireTokenizer(string directory)
    {
        if (!File.Exists(Path.Combine(directory, "tokenizer.json")))
        {
            throw new EngineException($"{directory}: no tokenizer.json (a model directory needs its tokenizer files; "
                                      + "copy tokenizer.json and tokenizer_config.json from the model it came from)");
        }
    }
}
