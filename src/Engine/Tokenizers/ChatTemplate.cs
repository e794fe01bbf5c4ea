using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Engine.Core;

namespace Engine.Tokenizers;

/// <summary>
/// Turns a chat into the text a model was trained on. The engine does not run Jinja: it recognises
/// the template families by their text (ChatML as in Qwen2/2.5/3, Llama-3's header ids, and the
/// plain GPT-2 style for models without a template) and renders them itself, with the outputs the
/// templates give for system/user/assistant chats (checked against Jinja renderings of the real
/// templates in the tests). Other formats come from a role-format file (see <see cref="Load"/>).
/// </summary>
internal sealed partial class ChatTemplate
{
    /// <summary>The template names <see cref="Load"/> accepts besides "auto", "none" and a file.</summary>
    public static readonly string[] Names = ["chatml", "llama3", "plain"];

    private readonly string _system, _user, _assistant, _generationPrompt, _separator;

    private ChatTemplate(string name, string system, string user, string assistant, string generationPrompt, string? endOfTurn,
        string separator = "", string? defaultSystem = null, string prefix = "", bool trim = false, bool stripThinking = false)
    {
        Name = name;
        (_system, _user, _assistant, _generationPrompt, _separator) = (system, user, assistant, generationPrompt, separator);
        EndOfTurn = endOfTurn;
        DefaultSystem = defaultSystem;
        Prefix = prefix;
        Trim = trim;
        StripThinking = stripThinking;
    }

    /// <summary>"chatml", "llama3", "plain" or the file a role format came from.</summary>
    public string Name { get; }

    /// <summary>The token that ends a turn (and so a response), e.g. "&lt;|im_end|&gt;"; null: the tokenizer's EOS.</summary>
    public string? EndOfTurn { get; }

    /// <summary>The system message the template adds when a chat has none (Qwen2/2.5), or null.</summary>
    public string? DefaultSystem { get; }

    /// <summary>Text before the first message (Llama-3: the BOS token's text).</summary>
    public string Prefix { get; }

    /// <summary>Message contents are trimmed (Llama-3).</summary>
    public bool Trim { get; }

    /// <summary>Reasoning before "&lt;/think&gt;" is dropped from earlier assistant turns (Qwen3).</summary>
    public bool StripThinking { get; }

    /// <summary>ChatML: <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>.</summary>
    public static ChatTemplate ChatMl(string? defaultSystem = null, bool stripThinking = false) => new("chatml",
        "<|im_start|>system\n{content}<|im_end|>\n", "<|im_start|>user\n{content}<|im_end|>\n",
        "<|im_start|>assistant\n{content}<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>",
        defaultSystem: defaultSystem, stripThinking: stripThinking);

    /// <summary>Llama-3: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;</c> after the BOS.</summary>
    public static ChatTemplate Llama3(string bosText = "<|begin_of_text|>") => new("llama3",
        "<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n{content}<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|eot_id|>", prefix: bosText, trim: true);

    /// <summary>Plain (GPT-2 style, no template): the contents one per line; a lone user message is its text.</summary>
    public static ChatTemplate Plain() => new("plain", "{content}", "{content}", "{content}", "", null, separator: "\n");

    /// <summary>
    /// The template for <paramref name="choice"/>: "auto" (the model's, from tokenizer_config.json or
    /// chat_template.jinja in <paramref name="modelDirectory"/>; plain when it has none), "chatml",
    /// "llama3", "plain", "none" (null: prompts stay as they are), or a template file (a Jinja file of a
    /// known family, or a .json role format with "system", "user", "assistant" and "generation_prompt"
    /// texts where "{content}" stands for the message, and optional "end_of_turn" and "default_system").
    /// </summary>
    public static ChatTemplate? Load(string choice, string? modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(choice);
        switch (choice.Trim().ToLowerInvariant())
        {
            case "none":
                return null;
            case "chatml":
                return ChatMl();
            case "llama3":
                return Llama3();
            case "plain":
                return Plain();
            case "auto":
                return modelDirectory is null ? Plain() : FromModelDirectory(modelDirectory);
        }

        if (!File.Exists(choice))
        {
            throw new EngineException($"chat template \"{choice}\": neither a template name nor a file (the choices: auto, none, {string.Join(", ", Names)}, or a template file)");
        }

        string text = File.ReadAllText(choice);
        return Path.GetExtension(choice).Equals(".json", StringComparison.OrdinalIgnoreCase)
            ? FromRoleFormat(text, choice)
            : Detect(text, null, choice);
    }

    /// <summary>The model's template: tokenizer_config.json's chat_template (or chat_template.jinja); plain when there is none.</summary>
    public static ChatTemplate FromModelDirectory(string directory)
    {
        string jinja = Path.Combine(directory, "chat_template.jinja");
        string configPath = Path.Combine(directory, "tokenizer_config.json");
        JsonObject? config = File.Exists(configPath) ? ParseObject(File.ReadAllText(configPath), configPath) : null;
        string? bos = config?["bos_token"] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            JsonObject o when o["content"] is JsonValue c && c.GetValueKind() == JsonValueKind.String => c.GetValue<string>(),
            _ => null,
        };
        if (File.Exists(jinja))
        {
            return Detect(File.ReadAllText(jinja), bos, jinja);
        }

        return config?["chat_template"] switch
        {
            null => Plain(),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => Detect(v.GetValue<string>(), bos, configPath),
            // A list of named templates: the "default" one.
            JsonArray list when list.OfType<JsonObject>().FirstOrDefault(t => (string?)t["name"] == "default")?["template"] is JsonValue d
                                && d.GetValueKind() == JsonValueKind.String => Detect(d.GetValue<string>(), bos, configPath),
            _ => throw new EngineException($"{configPath}: chat_template must be text or a list with a \"default\" template"),
        };
    }

    /// <summary>
    /// The template of a model: its directory's (see <see cref="FromModelDirectory"/>); when it has none (or the
    /// model has no directory), the family its tokenizer's special tokens announce (ChatML's &lt;|im_start|&gt; and
    /// &lt;|im_end|&gt;, Llama-3's &lt;|start_header_id|&gt; and &lt;|eot_id|&gt;); else plain.
    /// </summary>
    public static ChatTemplate ForModel(string? modelDirectory, ITokenizer tokenizer)
    {
        ChatTemplate fromDirectory = modelDirectory is null ? Plain() : FromModelDirectory(modelDirectory);
        if (fromDirectory.Name != "plain")
        {
            return fromDirectory;
        }

        bool Has(string token) => tokenizer.TryGetSpecialTokenId(token, out _);
        return Has("<|im_start|>") && Has("<|im_end|>") ? ChatMl()
            : Has("<|start_header_id|>") && Has("<|eot_id|>") ? Llama3(tokenizer.BosTokenId is int bos ? tokenizer.Decode([bos]) : "<|begin_of_text|>")
            : fromDirectory;
    }

    /// <summary>
    /// A Jinja text of a named template ("chatml" or "llama3") that Hugging Face tools render and this class
    /// recognises, written into checkpoints trained with that template; null for the others.
    /// </summary>
    public static string? JinjaText(string name) => name switch
    {
        "chatml" => "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
                    + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        "llama3" => "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                    + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
        _ => null,
    };

    /// <summary>Recognises a Jinja template's family by its text.</summary>
    public static ChatTemplate Detect(string template, string? bosToken, string source)
    {
        if (template.Contains("<|im_start|>", StringComparison.Ordinal) && template.Contains("<|im_end|>", StringComparison.Ordinal))
        {
            string? defaultSystem = DefaultSystemPattern().Match(template) is { Success: true } m ? Unescape(m.Groups[1].Value) : null;
            return ChatMl(defaultSystem, stripThinking: template.Contains("</think>", StringComparison.Ordinal));
        }

        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal) && template.Contains("<|eot_id|>", StringComparison.Ordinal)
            && !template.Contains("Cutting Knowledge Date", StringComparison.Ordinal))
        {
            return Llama3(bosToken ?? "<|begin_of_text|>");
        }

        throw new EngineException($"{source}: the engine does not know this chat template (it renders: {string.Join(", ", Names)}); "
                                  + "name one of those, or give a .json role-format template file");
    }

    /// <summary>
    /// The text of <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/>, followed
    /// by what opens the assistant's turn.
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        var sb = new StringBuilder(Prefix);
        if (DefaultSystem is not null && (messages.Count == 0 || messages[0].Role != "system"))
        {
            sb.Append(_system.Replace("{content}", DefaultSystem, StringComparison.Ordinal)).Append(_separator);
        }

        foreach (ChatTurn m in messages)
        {
            string content = Trim ? m.Content.Trim() : m.Content;
            if (StripThinking && m.Role == "assistant" && content.Contains("</think>", StringComparison.Ordinal))
            {
                content = content[(content.LastIndexOf("</think>", StringComparison.Ordinal) + "</think>".Length)..].TrimStart('\n');
            }

            string format = m.Role switch
            {
                "system" => _system,
                "user" => _user,
                "assistant" => _assistant,
                _ => throw new EngineException($"chat template {Name}: unknown role '{m.Role}' (the roles are: system, user, assistant)"),
            };
            sb.Append(format.Replace("{content}", content, StringComparison.Ordinal)).Append(_separator);
        }

        if (_separator.Length > 0 && sb.Length >= _separator.Length)
        {
            sb.Length -= _separator.Length;
        }

        if (addGenerationPrompt)
        {
            sb.Append(_generationPrompt);
        }

        return sb.ToString();
    }

    private static ChatTemplate FromRoleFormat(string json, string source)
    {
        JsonObject o = ParseObject(json, source);
        string Field(string key, bool required)
        {
            return o[key] switch
            {
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                null when !required => "",
                null => throw new EngineException($"{source}: missing \"{key}\" (a role format has system, user, assistant and generation_prompt)"),
                _ => throw new EngineException($"{source}: \"{key}\" must be text"),
            };
        }

        string user = Field("user", true);
        if (!user.Contains("{content}", StringComparison.Ordinal))
        {
            throw new EngineException($"{source}: \"user\" must contain {{content}}");
        }

        string endOfTurn = Field("end_of_turn", false), defaultSystem = Field("default_system", false);
        return new ChatTemplate(source, Field("system", true), user, Field("assistant", true), Field("generation_prompt", true),
            endOfTurn.Length > 0 ? endOfTurn : null, defaultSystem: defaultSystem.Length > 0 ? defaultSystem : null,
            prefix: Field("prefix", false));
    }

    private static JsonObject ParseObject(string json, string source)
    {
        try
        {
            return JsonNode.Parse(json) as JsonObject ?? throw new EngineException($"{source}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new EngineException($"{source}: invalid JSON ({e.Message})");
        }
    }

    /// <summary>The Jinja string escapes a default system literal can hold.</summary>
    private static string Unescape(string literal) =>
        literal.Replace("\\n", "\n", StringComparison.Ordinal).Replace("\\'", "'", StringComparison.Ordinal);

    /// <summary>A literal system turn in the template (the default when a chat has no system message).</summary>
    [GeneratedRegex(@"'<\|im_start\|>system\\n((?:[^'\\+]|\\.)+?)<\|im_end\|>\\n'")]
    private static partial Regex DefaultSystemPattern();
}
