using System.Text.Json;
using Engine.Core;
using Engine.Tests.Cli;
using Engine.Tokenizers;
using Engine.Training;
using Engine.Tests.Support;

namespace Engine.Tests.Tokenizers;

public sealed class ChatTemplateTests
{
    internal const string Qwen3Relative = "shared/data/tokenizers/qwen3";

    private static readonly Lazy<BpeTokenizer> Qwen3Tokenizer = new(() => BpeTokenizer.FromFile(Path.Combine(Qwen3Dir(), "tokenizer.json")));

    /// <summary>Qwen3's real tokenizer files next to the repository (see TokenizerFixtures.FindGpt2), or null.</summary>
    internal static string? FindQwen3()
    {
        for (var dir = new DirectoryInfo(TokenizerFixtures.RepoRoot()).Parent; dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, Qwen3Relative);
            if (File.Exists(Path.Combine(candidate, "tokenizer_config.json")))
            {
                return candidate;
            }
        }

        return null;
    }

    private static string Qwen3Dir() =>
        FindQwen3() ?? throw new FileNotFoundException($"Qwen3's tokenizer files are missing: expected {Qwen3Relative} next to the repository");

    private static JsonElement KnownAnswers() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat_templates", "known_answers.json"))).RootElement;

    private static ChatTemplate TemplateFor(string name, JsonElement root) => name switch
    {
        // The real templates: Qwen3's from its tokenizer_config.json; Llama-3's is not committed (Meta's licence), so by name.
        "qwen3" => ChatTemplate.FromModelDirectory(Qwen3Dir()),
        "chatml_default_system" => ChatTemplate.Detect(root.GetProperty("chatml_default_system_template").GetString()!, null, "test"),
        "llama3" => ChatTemplate.Llama3(),
        _ => throw new InvalidOperationException(name),
    };

    [Qwen3FilesFact]
    public void Renderings_match_jinja_on_the_real_templates()
    {
        JsonElement root = KnownAnswers();
        int checkedCases = 0;
        foreach (JsonElement c in root.GetProperty("cases").EnumerateArray())
        {
            string name = c.GetProperty("template").GetString()!;
            var chat = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatTurn(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();
            Assert.Equal(c.GetProperty("text").GetString(), TemplateFor(name, root).Render(chat));
            checkedCases++;
        }

        Assert.Equal(12, checkedCases);
    }

    [Qwen3FilesFact]
    public void Detection_reads_the_family_and_its_details_from_the_template_text()
    {
        ChatTemplate qwen3 = ChatTemplate.FromModelDirectory(Qwen3Dir());
        Assert.Equal(("chatml", "<|im_end|>", null, true), (qwen3.Name, qwen3.EndOfTurn, qwen3.DefaultSystem, qwen3.StripThinking));
        ChatTemplate withDefault = ChatTemplate.Detect(KnownAnswers().GetProperty("chatml_default_system_template").GetString()!, null, "t");
        Assert.Equal(("You are a careful assistant.", false), (withDefault.DefaultSystem, withDefault.StripThinking));
        ChatTemplate llama = ChatTemplate.Detect("{{ bos_token }}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}{{ '<|eot_id|>' }}", "<s>", "t");
        Assert.Equal(("llama3", "<|eot_id|>", "<s>"), (llama.Name, llama.EndOfTurn, llama.Prefix));
        Assert.Equal("plain", ChatTemplate.Load("auto", null)!.Name);
        Assert.Null(ChatTemplate.Load("none", null));
    }

    [Fact]
    public void Plain_keeps_a_lone_prompt_as_it_is()
    {
        Assert.Equal("12+7=", ChatTemplate.Plain().Render([new ChatTurn("user", "12+7=")]));
        Assert.Equal("Be brief.\nHi", ChatTemplate.Plain().Render([new ChatTurn("system", "Be brief."), new ChatTurn("user", "Hi")]));
    }

    [Fact]
    public void Unknown_templates_and_choices_are_one_line_errors()
    {
        var unknown = Assert.Throws<EngineException>(() => ChatTemplate.Detect("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}", null, "tokenizer_config.json"));
        Assert.Equal("tokenizer_config.json: the engine does not know this chat template (it renders: chatml, llama3, plain); "
                     + "name one of those, or give a .json role-format template file", unknown.Message);
        var choice = Assert.Throws<EngineException>(() => ChatTemplate.Load("mistral", null));
        Assert.Equal("chat template \"mistral\": neither a template name nor a file (the choices: auto, none, chatml, llama3, plain, or a template file)", choice.Message);
    }

    [Fact]
    public void A_role_format_file_renders_and_a_bad_one_is_named()
    {
        using var temp = new TempDir();
        string path = temp.File("t.json");
        File.WriteAllText(path, """{"prefix": "<bos>", "system": "S:{content}\n", "user": "U:{content}\n", "assistant": "A:{content}<eos>\n", "generation_prompt": "A:", "end_of_turn": "<eos>"}""");
        ChatTemplate t = ChatTemplate.Load(path, null)!;
        Assert.Equal("<bos>S:x\nU:y\nA:z<eos>\nU:w\nA:", t.Render([new("system", "x"), new("user", "y"), new("assistant", "z"), new("user", "w")]));

        // The template writes the BOS itself: the codec does not add a second one.
        var chars = new CharTokenizer("SUAxyzw:\n");
        var codec = TaskCodec.For(chars, [], t);
        int[] ids = codec.Prompt("y");
        Assert.Equal(chars.BosTokenId, ids[0]);
        Assert.Equal(1, ids.Count(i => i == chars.BosTokenId));
        Assert.Equal(chars.EosTokenId, codec.Eos);

        File.WriteAllText(path, """{"system": "{content}", "assistant": "{content}", "generation_prompt": ""}""");
        Assert.EndsWith("t.json: missing \"user\" (a role format has system, user, assistant and generation_prompt)",
            Assert.Throws<EngineException>(() => ChatTemplate.Load(path, null)).Message);
    }

    [Qwen3FilesFact]
    public void The_codec_ends_responses_at_the_end_of_turn_and_stops_at_every_eos()
    {
        BpeTokenizer tokenizer = Qwen3Tokenizer.Value;
        Assert.True(tokenizer.TryGetSpecialTokenId("<|im_start|>", out int imStart));
        Assert.True(tokenizer.TryGetSpecialTokenId("<|im_end|>", out int imEnd));
        Assert.True(tokenizer.TryGetSpecialTokenId("<|endoftext|>", out int endOfText));
        var codec = TaskCodec.For(tokenizer, [endOfText], ChatTemplate.FromModelDirectory(Qwen3Dir()));
        Assert.Equal(imEnd, codec.Eos);
        Assert.Equal([imEnd, endOfText], codec.StopIds);
        int[] prompt = codec.Prompt(new TaskExample("Hi", "") { Messages = [new("system", "S"), new("user", "Hi")] });
        Assert.Equal(imStart, prompt[0]);
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", tokenizer.Decode(prompt));
        Assert.Equal("Paris", codec.Decode([.. tokenizer.Encode("Paris"), endOfText]));
        Assert.Equal([.. tokenizer.Encode("Paris"), imEnd], codec.Response("Paris"));

        var noEndOfTurn = Assert.Throws<EngineException>(() => TaskCodec.For(new CharTokenizer("ab"), [], ChatTemplate.ChatMl()));
        Assert.Equal("chat template chatml ends turns with \"<|im_end|>\", which the tokenizer does not have", noEndOfTurn.Message);
    }
}

/// <summary>A fact that needs Qwen3's real tokenizer files (shared/data/tokenizers/qwen3 next to the repository).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class Qwen3FilesFactAttribute() : NeedsFactAttribute(
    ChatTemplateTests.FindQwen3() is not null, $"Qwen3's tokenizer files not found at <repo>/../{ChatTemplateTests.Qwen3Relative}");
