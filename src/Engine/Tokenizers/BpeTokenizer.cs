using System.Collections.Concurrent;
using System.Text;
using Engine.Core;

namespace Engine.Tokenizers;

/// <summary>
/// Byte-level BPE as Hugging Face's tokenizers library runs a tokenizer.json (GPT-2, Qwen2,
/// Llama 3 and their kin). Load with <see cref="FromFile"/> or <see cref="FromJson"/>.
/// </summary>
/// <remarks>
/// Encoding: (1) added tokens with normalized=false are split out of the raw text (leftmost,
/// longest literal match); (2) the text between them is normalized (none or NFC, see
/// <see cref="Nfc"/>); (3) added tokens with normalized=true are split out of that; (4) the
/// rest is pre-tokenized (the Split regex steps, then ByteLevel: optional prefix space and,
/// with use_regex, GPT-2's pattern); (5) each piece's UTF-8 bytes are mapped to GPT-2's byte
/// characters and merged by BPE: repeatedly the adjacent pair with the lowest merge rank
/// (leftmost on ties) until no pair has a rank, or, with ignore_merges, the whole piece when the
/// vocabulary has it. Results per piece are cached (bounded). Merging uses a priority queue,
/// O(n log n) in the piece length, so pathological long pieces (a megabyte without a space)
/// cost time proportional to their length, not its square.
///
/// Decoding follows the ByteLevel decoder: a token whose characters are all byte characters
/// stands for those bytes, any other token (special tokens like "&lt;|im_start|&gt;") for its own
/// UTF-8; the bytes are read as UTF-8 with U+FFFD for invalid sequences.
///
/// Round trip: Decode(Encode(s)) == s for any valid UTF-16 string when there is no normalizer
/// and no add_prefix_space (with NFC: == NFC(s), except that added tokens matched in the raw
/// text keep their literal content). Lone surrogates become U+FFFD.
///
/// SentencePiece-style files (model.byte_fallback: Llama-2, Mistral) take the path described in
/// BpeTokenizer.SentencePiece.cs: "▁" for spaces, characters as the first symbols with &lt;0xNN&gt;
/// byte tokens for the ones the vocabulary lacks, the same merging.
///
/// Not supported (rejected at load with a message): other model types, dropout,
/// continuing_subword_prefix / end_of_word_suffix, normalizers other than NFC (and, with
/// byte_fallback, Prepend and literal Replace), pre-tokenizers other than Split/ByteLevel (with
/// byte_fallback: none or Metaspace), decoders other than ByteLevel (with byte_fallback: Replace
/// "▁"→" ", ByteFallback, Fuse, Strip of leading spaces). Ignored: post_processor (no template
/// tokens are added), truncation and padding.
/// </remarks>
internal sealed partial class BpeTokenizer : ITokenizer
{
    private const int CacheCapacity = 1 << 16;
    private const int MaxCachedPieceLength = 64;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<long, Merge> _merges;
    private readonly int[] _byteIds;
    private readonly bool _ignoreMerges;

    private readonly bool _nfc;
    private readonly AddedTokenMatcher _rawAdded;
    private readonly AddedTokenMatcher _normalizedAdded;
    private readonly PieceSplitter[] _splitters;
    private readonly bool _addPrefixSpace;
    private readonly bool _byteLevelRegex;

    // SentencePiece-style files (byte_fallback); see BpeTokenizer.SentencePiece.cs.
    private readonly bool _byteFallback;
    private readonly bool _fuseUnk;
    private readonly int? _unkId;
    private readonly (string? Prepend, string? Pattern, string? Content)[] _textEdits;
    private readonly Metaspace? _metaspace;

    private readonly string?[] _idToToken;
    private readonly byte[]?[] _tokenBytes;
    private readonly bool[] _isSpecial;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly Dictionary<string, int> _specialByContent;

    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    [ThreadStatic]
    private static EncodeState? _spareState;

    private readonly record struct Merge(int Rank, int NewId);

    private readonly record struct QueuedPair(int Pos, int Left, int Right, int NewId);

    /// <inheritdoc />
    public int VocabSize => _idToToken.Length;

    /// <inheritdoc />
    public int? BosTokenId { get; }

    /// <inheritdoc />
    public int? EosTokenId { get; }

    /// <inheritdoc />
    public int? PadTokenId { get; }

    /// <summary>The added tokens, in file order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>Number of merge rules.</summary>
    public int MergeCount { get; }

    /// <summary>True when the text is NFC-normalized before pre-tokenisation.</summary>
    public bool NormalizesNfc => _nfc;

    /// <summary>True for SentencePiece-style BPE (byte_fallback: &lt;0xNN&gt; tokens, "▁" for spaces).</summary>
    public bool ByteFallback => _byteFallback;

    /// <inheritdoc />
    public int LeadingSpacesStripped { get; }

    /// <summary>Pieces currently cached (for tests and diagnostics).</summary>
    internal int CachedPieces => _cache.Count;

    private BpeTokenizer(Definition d)
    {
        _vocab = d.Vocab;
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _ignoreMerges = d.IgnoreMerges;
        _nfc = d.Nfc;
        _splitters = [.. d.Splitters];
        _addPrefixSpace = d.AddPrefixSpace;
        _byteLevelRegex = d.ByteLevelRegex;
        _byteFallback = d.ByteFallback;
        _fuseUnk = d.FuseUnk;
        _unkId = d.UnkId;
        _textEdits = [.. d.TextEdits];
        _metaspace = d.Metaspace;
        LeadingSpacesStripped = d.StripLeadingSpaces;
        AddedTokens = d.Added;

        int maxId = -1;
        foreach (int id in _vocab.Values)
        {
            maxId = Math.Max(maxId, id);
        }
        foreach (AddedToken t in d.Added)
        {
            maxId = Math.Max(maxId, t.Id);
        }
        _idToToken = new string?[maxId + 1];
        foreach (var (token, id) in _vocab)
        {
            _idToToken[id] = token;
        }
        _isSpecial = new bool[maxId + 1];
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        _specialByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken t in d.Added)
        {
            _idToToken[t.Id] = t.Content; // the added vocabulary wins for id -> token, as in the reference
            _addedByContent[t.Content] = t.Id;
            if (t.Special)
            {
                _isSpecial[t.Id] = true;
                _specialByContent[t.Content] = t.Id;
            }
        }
        _tokenBytes = new byte[]?[maxId + 1];
        for (int id = 0; id <= maxId; id++)
        {
            if (_idToToken[id] is { } token)
            {
                _tokenBytes[id] = _byteFallback ? SentencePieceTokenBytes(token) : ByteLevel.TokenToBytes(token);
            }
        }

        _byteIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            _byteIds[b] = _byteFallback
                ? (_vocab.TryGetValue(string.Format(System.Globalization.CultureInfo.InvariantCulture, ByteTokenFormat, b), out int byteToken) ? byteToken : -1)
                : _vocab.TryGetValue(ByteLevel.ByteToChar((byte)b).ToString(), out int id) ? id : d.UnkId ?? -1;
        }

        _merges = new Dictionary<long, Merge>(d.Merges.Count);
        for (int rank = 0; rank < d.Merges.Count; rank++)
        {
            var (left, right) = d.Merges[rank];
            int l = _vocab[left], r = _vocab[right], result = _vocab[left + right];
            _merges[PairKey(l, r)] = new Merge(rank, result); // a repeated pair keeps its last rank, like the reference
        }
        MergeCount = d.Merges.Count;

        // Two passes like the reference: normalized=false tokens on the raw text, then
        // normalized=true tokens (content normalized too) on the normalized text between them.
        _rawAdded = new AddedTokenMatcher(d.Added.Where(t => !t.Normalized), t => t.Content);
        _normalizedAdded = new AddedTokenMatcher(d.Added.Where(t => t.Normalized), t => EditText(_nfc ? Nfc.Normalize(t.Content) : t.Content));

        BosTokenId = FindToken(d.BosToken, "<|begin_of_text|>", "<s>", "<bos>");
        EosTokenId = FindToken(d.EosToken, "<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>");
        PadTokenId = FindToken(d.PadToken, "<pad>", "<|pad|>", "<|finetune_right_pad_id|>");
    }

    private int? FindToken(string? configured, params string[] conventional)
    {
        if (configured is not null)
        {
            return TryGetTokenId(configured, out int id)
                ? id
                : throw new EngineException($"tokenizer_config.json names token \"{configured}\", which the tokenizer does not have");
        }
        foreach (string name in conventional)
        {
            if (_addedByContent.TryGetValue(name, out int id))
            {
                return id;
            }
        }
        return null;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        EncodeState st = _spareState ?? new EncodeState();
        _spareState = null;
        try
        {
            st.Ids.Clear();
            var raw = new List<TextSegment>();
            _rawAdded.Split(text, 0, text.Length, raw);
            foreach (TextSegment seg in raw)
            {
                if (seg.TokenId >= 0)
                {
                    st.Ids.Add(seg.TokenId);
                    continue;
                }
                string s = text;
                int start = seg.Start, length = seg.Length;
                bool atTextStart = seg.Start == 0;
                if (_nfc && !Nfc.IsQuickNfc(text.AsSpan(start, length)))
                {
                    s = Nfc.Normalize(text.AsSpan(start, length));
                    start = 0;
                    length = s.Length;
                }
                if (_textEdits.Length > 0)
                {
                    s = EditText(s.Substring(start, length));
                    start = 0;
                    length = s.Length;
                }
                if (_normalizedAdded.IsEmpty)
                {
                    EncodeOrdinary(s, start, length, atTextStart, st);
                    continue;
                }
                st.Segments.Clear();
                _normalizedAdded.Split(s, start, length, st.Segments);
                foreach (TextSegment inner in st.Segments)
                {
                    if (inner.TokenId >= 0)
                    {
                        st.Ids.Add(inner.TokenId);
                    }
                    else
                    {
                        EncodeOrdinary(s, inner.Start, inner.Length, atTextStart && inner.Start == start, st);
                    }
                }
            }
            return [.. st.Ids];
        }
        finally
        {
            if (st.Ids.Capacity <= 1 << 16 && st.Bytes.Length <= 1 << 16)
            {
                _spareState = st; // keep small scratch for the next call on this thread
            }
        }
    }

    private void EncodeOrdinary(string text, int start, int length, bool atTextStart, EncodeState st)
    {
        if (length == 0)
        {
            return;
        }
        List<TextPiece> pieces = st.PiecesA, next = st.PiecesB;
        pieces.Clear();
        if (_byteFallback)
        {
            if (_metaspace is not null)
            {
                MetaspacePieces(text, start, length, atTextStart, pieces);
            }
            else
            {
                pieces.Add(new TextPiece(text, start, length));
            }

            foreach (TextPiece p in pieces)
            {
                EncodePiece(p.Span, st);
            }
            pieces.Clear();
            return;
        }
        pieces.Add(new TextPiece(text, start, length));
        foreach (PieceSplitter splitter in _splitters)
        {
            next.Clear();
            foreach (TextPiece p in pieces)
            {
                splitter.Split(p.Text, p.Start, p.Length, next);
            }
            (pieces, next) = (next, pieces);
        }
        if (_addPrefixSpace)
        {
            for (int i = 0; i < pieces.Count; i++)
            {
                TextPiece p = pieces[i];
                if (p.Text[p.Start] != ' ')
                {
                    string prefixed = string.Concat(" ", p.Span);
                    pieces[i] = new TextPiece(prefixed, 0, prefixed.Length);
                }
            }
        }
        if (_byteLevelRegex)
        {
            next.Clear();
            foreach (TextPiece p in pieces)
            {
                Gpt2Splitter.Instance.Split(p.Text, p.Start, p.Length, next);
            }
            (pieces, next) = (next, pieces);
        }
        foreach (TextPiece p in pieces)
        {
            EncodePiece(p.Span, st);
        }
        st.PiecesA.Clear();
        st.PiecesB.Clear();
    }

    private void EncodePiece(ReadOnlySpan<char> piece, EncodeState st)
    {
        bool cacheable = piece.Length <= MaxCachedPieceLength;
        if (cacheable && _cacheBySpan.TryGetValue(piece, out int[]? cached))
        {
            st.Ids.AddRange(cached);
            return;
        }
        int first = st.Ids.Count;
        if (_byteFallback)
        {
            if (_ignoreMerges && _vocabBySpan.TryGetValue(piece, out int whole))
            {
                st.Ids.Add(whole);
            }
            else
            {
                MergeSymbols(CharSymbols(piece, st), st);
            }
        }
        else
        {
            int maxBytes = Encoding.UTF8.GetMaxByteCount(piece.Length);
            if (st.Bytes.Length < maxBytes)
            {
                st.Bytes = new byte[Math.Max(maxBytes, st.Bytes.Length * 2)];
            }
            int n = Encoding.UTF8.GetBytes(piece, st.Bytes); // lone surrogates -> EF BF BD
            Bpe(st.Bytes.AsSpan(0, n), st);
        }
        if (cacheable)
        {
            if (_cache.Count >= CacheCapacity)
            {
                _cache.Clear();
            }
            _cache.TryAdd(piece.ToString(), st.Ids.GetRange(first, st.Ids.Count - first).ToArray());
        }
    }

    /// <summary>BPE over one piece's bytes; appends the ids to <c>st.Ids</c>.</summary>
    private void Bpe(ReadOnlySpan<byte> bytes, EncodeState st)
    {
        int n = bytes.Length;
        if (_ignoreMerges && n > 1)
        {
            if (st.Chars.Length < n)
            {
                st.Chars = new char[Math.Max(n, st.Chars.Length * 2)];
            }
            ByteLevel.Map(bytes, st.Chars);
            if (_vocabBySpan.TryGetValue(st.Chars.AsSpan(0, n), out int whole))
            {
                st.Ids.Add(whole);
                return;
            }
        }
        st.EnsureSymbols(n);
        int[] symbols = st.SymbolIds;
        for (int k = 0; k < n; k++)
        {
            int id = _byteIds[bytes[k]];
            if (id < 0)
            {
                throw new EngineException(
                    $"byte 0x{bytes[k]:X2} (byte-level character '{ByteLevel.ByteToChar(bytes[k])}') has no token in the vocabulary and there is no unk_token");
            }
            symbols[k] = id;
        }
        MergeSymbols(n, st);
    }

    /// <summary>Merges the first <paramref name="n"/> symbols in <c>st.SymbolIds</c>; appends the resulting ids to <c>st.Ids</c>.</summary>
    private void MergeSymbols(int n, EncodeState st)
    {
        if (n == 0)
        {
            return;
        }
        int[] ids = st.SymbolIds, prev = st.Prev, next = st.Next;
        bool[] alive = st.Alive;
        for (int k = 0; k < n; k++)
        {
            prev[k] = k - 1;
            next[k] = k + 1 < n ? k + 1 : -1;
            alive[k] = true;
        }
        if (n > 1 && _merges.Count > 0)
        {
            PriorityQueue<QueuedPair, long> queue = st.Queue;
            queue.Clear();
            for (int k = 0; k + 1 < n; k++)
            {
                Enqueue(queue, k, ids[k], ids[k + 1]);
            }
            while (queue.TryDequeue(out QueuedPair q, out _))
            {
                int k = q.Pos;
                int r = next[k];
                if (!alive[k] || r < 0 || ids[k] != q.Left || ids[r] != q.Right)
                {
                    continue; // stale
                }
                ids[k] = q.NewId;
                alive[r] = false;
                next[k] = next[r];
                if (next[r] >= 0)
                {
                    prev[next[r]] = k;
                }
                if (prev[k] >= 0)
                {
                    Enqueue(queue, prev[k], ids[prev[k]], ids[k]);
                }
                if (next[k] >= 0)
                {
                    Enqueue(queue, k, ids[k], ids[next[k]]);
                }
            }
        }
        for (int k = 0; k >= 0; k = next[k])
        {
            st.Ids.Add(ids[k]);
        }
    }

    private void Enqueue(PriorityQueue<QueuedPair, long> queue, int pos, int left, int right)
    {
        if (_merges.TryGetValue(PairKey(left, right), out Merge m))
        {
            queue.Enqueue(new QueuedPair(pos, left, right, m.NewId), ((long)m.Rank << 32) | (uint)pos);
        }
    }

    /// <inheritdoc />
    public string IdToToken(int id)
    {
        TokenText.CheckId(id, VocabSize);
        return _idToToken[id] ?? throw new EngineException($"token id {id} is not assigned in the vocabulary");
    }

    /// <inheritdoc />
    public TokenStreamDecoder CreateStreamDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <inheritdoc />
    public ReadOnlySpan<byte> TokenBytes(int id)
    {
        TokenText.CheckId(id, VocabSize);
        return _tokenBytes[id] ?? throw new EngineException($"token id {id} is not assigned in the vocabulary");
    }

    /// <inheritdoc />
    public bool TryGetTokenId(string token, out int id) =>
        _addedByContent.TryGetValue(token, out id) || _vocab.TryGetValue(token, out id);

    /// <inheritdoc />
    public bool TryGetSpecialTokenId(string content, out int id) => _specialByContent.TryGetValue(content, out id);

    /// <inheritdoc />
    public bool IsSpecialToken(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) => TokenText.Decode(this, ids, skipSpecialTokens);

    /// <summary>Scratch for one Encode call (reused per thread).</summary>
    private sealed class EncodeState
    {
        public readonly List<int> Ids = [];
        public readonly List<TextSegment> Segments = [];
        public readonly List<TextPiece> PiecesA = [];
        public readonly List<TextPiece> PiecesB = [];
        public readonly PriorityQueue<QueuedPair, long> Queue = new();
        public byte[] Bytes = new byte[256];
        public char[] Chars = new char[256];
        public int[] SymbolIds = [];
        public int[] Prev = [];
        public int[] Next = [];
        public bool[] Alive = [];

        public void EnsureSymbols(int n)
        {
            if (SymbolIds.Length < n)
            {
                int size = Math.Max(n, SymbolIds.Length * 2);
                SymbolIds = new int[size];
                Prev = new int[size];
                Next = new int[size];
                Alive = new bool[size];
            }
        }
    }
}
