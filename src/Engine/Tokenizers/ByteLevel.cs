namespace Engine.Tokenizers;

/// <summary>
/// GPT-2's byte-to-unicode table (<c>bytes_to_unicode</c> in OpenAI's encoder.py): every byte
/// maps to one printable character, so byte-level BPE vocabularies are plain strings. Bytes
/// '!'..'~', '¡'..'¬' and '®'..'ÿ' map to the same code point; the other 68 bytes map, in
/// increasing order, to U+0100, U+0101, ... All 256 characters are in the BMP.
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToCharTable = BuildByteToChar();
    private static readonly short[] CharToByteTable = BuildCharToByte(ByteToCharTable);

    /// <summary>The character byte <paramref name="b"/> maps to.</summary>
    public static char ByteToChar(byte b) => ByteToCharTable[b];

    /// <summary>The byte character <paramref name="c"/> stands for, or -1 when it is not one of the 256.</summary>
    public static int CharToByte(char c) => c < CharToByteTable.Length ? CharToByteTable[c] : -1;

    /// <summary>Maps bytes to their characters.</summary>
    public static void Map(ReadOnlySpan<byte> bytes, Span<char> chars)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            chars[i] = ByteToCharTable[bytes[i]];
        }
    }

    /// <summary>
    /// The bytes a vocabulary token stands for, as Hugging Face's ByteLevel decoder computes
    /// them: when every character of <paramref name="token"/> is a byte character, those bytes;
    /// otherwise (e.g. a special token such as "&lt;|im_start|&gt;" written with characters outside
    /// the table) the token's own UTF-8 bytes.
    /// </summary>
    public static byte[] TokenToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int b = CharToByte(token[i]);
            if (b < 0)
            {
                return System.Text.Encoding.UTF8.GetBytes(token);
            }
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + next++);
        }
        return table;
    }

    private static short[] BuildCharToByte(char[] byteToChar)
    {
        var table = new short[256 + 68];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            table[byteToChar[b]] = (short)b;
        }
        return table;
    }
}
