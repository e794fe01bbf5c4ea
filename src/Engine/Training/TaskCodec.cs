using Engine.Core;
using Engine.Tokenizers;

namespace Engine.Training;

/// <summary>
/// How task text becomes tokens: a prompt is [BOS] + text (rendered by the chat template when there
/// is one), a response is text + the end-of-turn token. The same codec serves SFT, rollouts, rewards
/// and evaluation, so they agree on the format.
/// </summary>
internal sealed class TaskCodec
{
    public TaskCodec(ITokenizer tokenizer, int eos, ChatTemplate? template = null, IReadOnlyList<int>? stopIds = null)
    {
        Tokenizer = tokenizer;
        Eos = eos;
        Template = template;
        StopIds = stopIds is null ? [eos] : [eos, .. stopIds.Where(id => id != eos).Distinct()];
    }

    public ITokenizer Tokenizer { get; }

    /// <summary>The id that ends a response in SFT targets: the template's end-of-turn token, else the end-of-sequence id.</summary>
    public int Eos { get; }

    /// <summary>Every id that ends a generated response: <see cref="Eos"/>, the tokenizer's EOS and the model's EOS ids.</summary>
    public IReadOnlyList<int> StopIds { get; }

    /// <summary>The chat template prompts are rendered with; null: the prompt text as it is.</summary>
    public ChatTemplate? Template { get; }

    /// <summary>
    /// Creates a codec. With a template that ends turns with its own token (ChatML's &lt;|im_end|&gt;,
    /// Llama-3's &lt;|eot_id|&gt;) that token ends responses; otherwise the tokenizer's (or the
    /// model's first) end-of-sequence id does. Generation stops at any of them.
    /// </summary>
    public static TaskCodec For(ITokenizer tokenizer, IReadOnlyList<int> modelEos, ChatTemplate? template = null)
    {
        int eos;
        if (template?.EndOfTurn is string endOfTurn)
        {
            eos = tokenizer.TryGetSpecialTokenId(endOfTurn, out int id) || tokenizer.TryGetTokenId(endOfTurn, out id)
                ? id
                : throw new EngineException($"chat template {template.Name} ends turns with \"{endOfTurn}\", which the tokenizer does not have");
        }
        else
        {
            eos = tokenizer.EosTokenId ?? (modelEos.Count > 0 ? modelEos[0]
                : throw new EngineException("the tokenizer and the model define no end-of-sequence token"));
        }

        List<int> stops = [.. modelEos];
        if (tokenizer.EosTokenId is int tokenizerEos)
        {
            stops.Add(tokenizerEos);
        }

        return new TaskCodec(tokenizer, eos, template, stops);
    }

    /// <summary>Prompt tokens of one user message: BOS when the tokenizer has one (and the template did not write it), then the text.</summary>
    public int[] Prompt(string text) =>
        Encode(Template is null ? text : Template.Render([new ChatTurn("user", text)]));

    /// <summary>Prompt tokens of an example: its whole chat when it has one, else its prompt as one user message.</summary>
    public int[] Prompt(TaskExample example) =>
        Template is not null && example.Messages is { Count: > 0 } chat ? Encode(Template.Render(chat)) : Prompt(example.Prompt);

    /// <summary>Prompt tokens of a chat, rendered by the template (plain without one), ending in the assistant's turn.</summary>
    public int[] Prompt(IReadOnlyList<ChatTurn> chat) => Encode((Template ?? ChatTemplate.Plain()).Render(chat));

    /// <summary>Response tokens for SFT: the text, then EOS.</summary>
    public int[] Response(string text) => [.. Tokenizer.Encode(text), Eos];

    /// <summary>Response text for scoring: a trailing stop id removed, special tokens skipped.</summary>
    public string Decode(IReadOnlyList<int> response)
    {
        int n = response.Count > 0 && StopIds.Contains(response[^1]) ? response.Count - 1 : response.Count;
        var ids = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = response[i];
        }

        return Tokenizer.Decode(ids, skipSpecialTokens: true);
    }

    private int[] Encode(string text)
    {
        int[] ids = Tokenizer.Encode(text);
        return Tokenizer.BosTokenId is int bos && (ids.Length == 0 || ids[0] != bos) ? [bos, .. ids] : ids;
    }
}
