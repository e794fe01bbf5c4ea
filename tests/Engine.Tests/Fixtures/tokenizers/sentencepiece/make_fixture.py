"""Builds two small SentencePiece-style BPE tokenizer.json files in the layout of Llama-2's and Mistral's
(byte_fallback with <0x00>..<0xFF> tokens, ▁ for spaces, <unk>/<s>/</s>), with merges trained here on
the small corpus below, so no licensed vocabulary is copied:

  sp_legacy_tokenizer.json     Llama-2 / Mistral v0.1 ("legacy"): normalizer Prepend "▁" + Replace " " -> "▁", no pre-tokenizer
  sp_metaspace_tokenizer.json  the newer conversion: no normalizer, Metaspace pre-tokenizer (prepend_scheme "first", split false)

Both decode with Llama-2's decoder (Replace "▁" -> " ", ByteFallback, Fuse, Strip one leading space).
Run: python3 make_fixture.py   (then node make_known_answers.mjs for the answers)."""
import collections
import json

CORPUS = """
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs into the forest.
A tokenizer turns text into tokens; the model reads the tokens and writes new ones.
Hello world! Hello there, how are you? I am fine, thank you.
Numbers like 12 and 345 are written one digit at a time: 1, 2, 3, 4, 5.
Naïve café owners in München serve crème brûlée and Käsekuchen.
Reinforcement learning rewards the model for a correct answer and the training improves the policy.
""" * 3
MERGES = 220
SPACE = "\u2581"


def train(corpus, count):
    words = collections.Counter(SPACE + w for w in corpus.split())
    words[SPACE + SPACE] += 20  # runs of spaces, as Llama-2's "▁▁" tokens
    splits = {w: list(w) for w in words}
    merges = []
    for _ in range(count):
        pairs = collections.Counter()
        for w, n in words.items():
            s = splits[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, ties by text: deterministic
        merges.append(best)
        for w in words:
            s, out, i = splits[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
    return merges


def build(merges, legacy):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    # Characters the corpus uses, except a few left to the byte fallback ('z', 'q', 'x', 'j', 'v', 'y', 'k').
    for c in sorted(set(CORPUS.replace("\n", " ").replace(" ", SPACE))):
        if c not in "zqxjvyk" and c not in vocab:
            vocab[c] = len(vocab)
    kept = []
    for a, b in merges:
        if a in vocab and b in vocab:
            kept.append(f"{a} {b}")
            vocab.setdefault(a + b, len(vocab))
    special = lambda i, t: {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]} if legacy else None,
        "pre_tokenizer": None if legacy else {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False},
        "post_processor": None,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": kept},
    }


merges = train(CORPUS, MERGES)
for name, legacy in [("sp_legacy_tokenizer.json", True), ("sp_metaspace_tokenizer.json", False)]:
    with open(name, "w", encoding="utf-8") as f:
        json.dump(build(merges, legacy), f, ensure_ascii=False, indent=1)
        f.write("\n")
print(f"{len(merges)} merges")
