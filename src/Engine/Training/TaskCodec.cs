using Engine.Core;
using Engine.Tokenizers;

namespace Engine.Training;

/// <summary>
/// How task text becomes tokens: a prompt is [BOS] + text, a response is text + EOS. The same
/// codec serves SFT, rollouts, rewards and evaluation, so they agree on the format.
/// </summary>
internal sealed class TaskCodec
{
    public TaskCodec(ITokenizer tokenizer, int eos)
    {
        Tokenizer = tokenizer;
        Eos = eos;
    }

    public ITokenizer Tokenizer { get; }

    /// <summary>The end-of-sequence id that ends a response.</summary>
    public int Eos { get; }

    /// <summary>Creates a codec whose EOS is the tokenizer's (or the model's first) end-of-sequence id.</summary>
    public static TaskCodec For(ITokenizer tokenizer, IReadOnlyList<int> modelEos) =>
        new(tokenizer, tokenizer.EosTokenId ?? (modelEos.Count > 0 ? modelEos[0]
            : throw new EngineException("the tokenizer and the model define no end-of-sequence token")));

    /// <summary>Prompt tokens: BOS when the tokenizer has one, then the text.</summary>
    public int[] Prompt(string text)
    {
        int[] ids = Tokenizer.Encode(text);
        return Tokenizer.BosTokenId is int bos ? [bos, .. ids] : ids;
    }

    /// <summary>Response tokens for SFT: the text, then EOS.</summary>
    public int[] Response(string text) => [.. Tokenizer.Encode(text), Eos];

    /// <summary>Response text for scoring: a trailing EOS removed, special tokens skipped.</summary>
    public string Decode(IReadOnlyList<int> response)
    {
        int n = response.Count > 0 && response[^1] == Eos ? response.Count - 1 : response.Count;
        var ids = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = response[i];
        }

        return Tokenizer.Decode(ids, skipSpecialTokens: true);
    }
}
