using System.Text;
using Engine.Tokenizers;
using Microsoft.Extensions.AI;

namespace Engine.Chat;

/// <summary>
/// The prompt text of a conversation, in a minimal stand-in for the tokenizer's chat template: ChatML
/// (<c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>, then <c>&lt;|im_start|&gt;assistant\n</c>)
/// when the tokenizer has the <c>&lt;|im_start|&gt;</c> and <c>&lt;|im_end|&gt;</c> tokens, else plain
/// <c>role: content</c> lines ending in <c>assistant:</c>. Swap this class for the chat-template
/// renderer (tokenizer_config.json's template) when that lands; nothing else depends on the format.
/// </summary>
internal static class ChatPromptFormat
{
    private const string ImStart = "<|im_start|>", ImEnd = "<|im_end|>";

    /// <summary>The prompt text and the token ids that end the assistant's turn (besides the model's EOS).</summary>
    public static (string Prompt, IReadOnlyList<int> EndOfTurn) Render(ITokenizer tokenizer, IEnumerable<ChatMessage> messages)
    {
        var text = new StringBuilder();
        if (tokenizer.TryGetSpecialTokenId(ImStart, out _) && tokenizer.TryGetSpecialTokenId(ImEnd, out int imEnd))
        {
            foreach (ChatMessage m in messages)
            {
                text.Append(ImStart).Append(m.Role.Value).Append('\n').Append(m.Text).Append(ImEnd).Append('\n');
            }

            text.Append(ImStart).Append(ChatRole.Assistant.Value).Append('\n');
            return (text.ToString(), [imEnd]);
        }

        foreach (ChatMessage m in messages)
        {
            text.Append(m.Role.Value).Append(": ").Append(m.Text).Append('\n');
        }

        text.Append(ChatRole.Assistant.Value).Append(':');
        return (text.ToString(), []);
    }
}
