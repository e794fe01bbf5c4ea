using System.Text;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.IO;
using Engine.Model;
using Engine.Runs;
using Engine.Tokenizers;

namespace Engine.Tests.Fuzzing;

/// <summary>
/// Every parser a user's file reaches, as a function of the file's bytes. The contract under test:
/// each input either loads or throws an <see cref="EngineException"/> with a message; anything else
/// (another exception, a crash, a hang) is a bug. Shared by the property tests (CsCheck, in the
/// suite) and the coverage-guided harness (fuzz/Engine.Fuzz, SharpFuzz + AFL++), which links this file.
/// </summary>
internal static class ParserTargets
{
    /// <summary>A byte-level BPE tokenizer that loads (every byte a token, one merge), for the tokenizer_config.json target.</summary>
    /// <remarks>Lazy: nothing of the engine may run before SharpFuzz sets up its coverage map (an instrumented call would crash).</remarks>
    private static readonly Lazy<string> SmallTokenizer = new(() => new JsonObject
    {
        ["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["vocab"] = new JsonObject(Enumerable.Range(0, 256)
                .Select(b => KeyValuePair.Create(ByteLevel.ByteToChar((byte)b).ToString(), (JsonNode?)b))
                .Append(KeyValuePair.Create("ab", (JsonNode?)256))
                .Append(KeyValuePair.Create("<|endoftext|>", (JsonNode?)257))),
            ["merges"] = new JsonArray("a b"),
        },
        ["added_tokens"] = JsonNode.Parse("""[{"id": 257, "content": "<|endoftext|>", "special": true}]"""),
        ["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false}"""),
        ["decoder"] = JsonNode.Parse("""{"type": "ByteLevel"}"""),
    }.ToJsonString());

    /// <summary>Text each tokenizer that loads encodes and decodes (letters, digits, space runs, CJK, an emoji, a special token).</summary>
    private const string Probe = "Hello  world 123 \u00e9t\u00e9 \u4f60\u597d \U0001F600 <|endoftext|>\n\tend";

    /// <summary>The targets by name: safetensors, index, config, tokenizer, tokenizer_config, run_config.</summary>
    public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
    {
        ["safetensors"] = SafeTensors,
        ["index"] = Index,
        ["config"] = bytes => HfConfig.Parse(Text(bytes)),
        ["tokenizer"] = Tokenizer,
        ["tokenizer_config"] = bytes => Exercise(BpeTokenizer.FromJson(SmallTokenizer.Value, Text(bytes))),
        ["run_config"] = RunConfig,
    };

    /// <summary>A scratch folder of this process (the file targets write their input there).</summary>
    private static readonly Lazy<string> Scratch = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"engine-fuzz-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
                // left for the system's temp cleaner
            }
        };
        return dir;
    });

    /// <summary>
    /// Runs one target on one input: null when it loaded, else the EngineException's message (why
    /// not). Any other exception escapes: that is the bug the fuzzers look for.
    /// </summary>
    public static string? Run(string target, byte[] input)
    {
        try
        {
            All[target](input);
            return null;
        }
        catch (EngineException e)
        {
            return e.Message.Length > 0 ? e.Message : throw new InvalidOperationException("an EngineException without a message", e);
        }
    }

    private static string Text(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    private static string WriteScratch(string name, byte[] bytes)
    {
        string path = Path.Combine(Scratch.Value, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void SafeTensors(byte[] bytes)
    {
        using SafeTensorsFile file = SafeTensorsFile.Open(WriteScratch("model.safetensors", bytes));
        foreach (SafeTensorInfo t in file.Tensors)
        {
            if (t.ByteLength > 1 << 20)
            {
                continue;
            }

            if (t.DType is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64)
            {
                _ = file.ReadAsFloat32(t.Name);
            }
            else if (t.DType == SafeTensorsDType.I64)
            {
                _ = file.ReadAsInt64(t.Name);
            }
            else
            {
                _ = file.ReadAsInt32(t.Name);
            }
        }
    }

    private static void Index(byte[] bytes)
    {
        // The index sits beside one valid shard ("model-00001-of-00001.safetensors", one F32 tensor "w" of 2 elements).
        string dir = Path.Combine(Scratch.Value, "index");
        Directory.CreateDirectory(dir);
        string shard = Path.Combine(dir, "model-00001-of-00001.safetensors");
        if (!File.Exists(shard))
        {
            byte[] header = Encoding.UTF8.GetBytes("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""");
            byte[] file = new byte[8 + header.Length + 8];
            BitConverter.TryWriteBytes(file.AsSpan(0, 8), (ulong)header.Length);
            header.CopyTo(file, 8);
            File.WriteAllBytes(shard, file);
        }

        File.WriteAllBytes(Path.Combine(dir, "model.safetensors.index.json"), bytes);
        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(dir);
        if (checkpoint.Contains("w"))
        {
            _ = checkpoint.ReadAsFloat32("w");
        }
    }

    private static void Tokenizer(byte[] bytes)
    {
        string dir = Path.Combine(Scratch.Value, "tokenizer");
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, TokenizerLoader.FileName), bytes);
        Exercise(TokenizerLoader.Load(dir));
    }

    private static void Exercise(ITokenizer tokenizer)
    {
        int[] ids = tokenizer.Encode(Probe);
        _ = tokenizer.Decode(ids);
        _ = tokenizer.Decode(ids, skipSpecialTokens: true);
    }

    private static void RunConfig(byte[] bytes)
    {
        RunOptions options = RunOptions.FromFile(WriteScratch("run.json", bytes));
        options.Validate();
    }
}
