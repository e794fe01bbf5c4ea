#!/usr/bin/env python3
"""Writes an engine GPT-2 checkpoint (HF layout: config.json + model.safetensors, F32) as an F32 GGUF file
for llama.cpp's `gpt2` architecture, using the gguf-py package of a llama.cpp source tree.

    hf_to_gguf.py MODEL_DIR OUT.gguf --gguf-py LLAMA_CPP/gguf-py

The tensors are the checkpoint's, renamed and laid out as llama.cpp's own convert_hf_to_gguf.py does for
GPT-2 (Conv1D weights transposed to [out, in]; the tied embedding written again as `output.weight`).
The tokenizer section is synthetic, since the benchmark models have random weights and no tokenizer:
a byte-level BPE vocabulary of the model's size whose first 256 tokens are GPT-2's byte symbols (so a
text prompt tokenizes to its UTF-8 bytes, token id = byte value), the rest placeholders, and one merge
(llama.cpp requires a merge list). The vocabulary's contents do not change the cost of a forward pass.
Only numpy and gguf-py are needed (no torch, transformers, safetensors or sentencepiece).
"""
import argparse
import json
import os
import struct
import sys
import types

import numpy as np


def import_gguf(gguf_py):
    sys.path.insert(0, gguf_py)
    try:
        import sentencepiece  # noqa: F401  (gguf-py imports it for vocabularies this script does not read)
    except ImportError:
        stub = types.ModuleType("sentencepiece")
        stub.SentencePieceProcessor = object
        sys.modules["sentencepiece"] = stub
    import gguf
    return gguf


def read_safetensors(path):
    """name -> float32 array; the engine writes F32 (model.safetensors, unsharded)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}, expected F32 (save the checkpoint as F32)")
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
    return tensors


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--gguf-py", required=True, help="the gguf-py folder of a llama.cpp source tree")
    args = ap.parse_args()
    gguf = import_gguf(args.gguf_py)

    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "gpt2":
        sys.exit(f"{args.model_dir}: model_type {cfg.get('model_type')!r}, expected 'gpt2'")
    vocab, dim, layers, heads = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    ffn = cfg.get("n_inner") or 4 * dim
    positions = cfg["n_positions"]
    if vocab < 257:
        sys.exit(f"vocab_size {vocab}: the synthetic byte-level vocabulary needs at least 257 tokens")
    w = read_safetensors(os.path.join(args.model_dir, "model.safetensors"))
    w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}

    tmp = args.out + ".tmp"
    writer = gguf.GGUFWriter(tmp, "gpt2")
    writer.add_name("engine random gpt2")
    writer.add_context_length(positions)
    writer.add_embedding_length(dim)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_layer_norm_eps(float(cfg.get("layer_norm_epsilon", 1e-5)))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    byte_symbols = bytes_to_unicode()
    tokens = [byte_symbols[b] for b in range(256)] + ["ĠĠ"] + [f"<|synthetic_{i}|>" for i in range(257, vocab)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * vocab)
    writer.add_token_merges(["Ġ Ġ"])
    writer.add_bos_token_id(vocab - 1)
    writer.add_eos_token_id(vocab - 1)
    writer.add_add_bos_token(False)

    def add(name, array, transpose=False):
        array = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
        writer.add_tensor(name, array)

    add("token_embd.weight", w["wte.weight"])
    add("position_embd.weight", w["wpe.weight"])
    for l in range(layers):
        p, b = f"h.{l}.", f"blk.{l}."
        add(b + "attn_norm.weight", w[p + "ln_1.weight"])
        add(b + "attn_norm.bias", w[p + "ln_1.bias"])
        add(b + "attn_qkv.weight", w[p + "attn.c_attn.weight"], transpose=True)
        add(b + "attn_qkv.bias", w[p + "attn.c_attn.bias"])
        add(b + "attn_output.weight", w[p + "attn.c_proj.weight"], transpose=True)
        add(b + "attn_output.bias", w[p + "attn.c_proj.bias"])
        add(b + "ffn_norm.weight", w[p + "ln_2.weight"])
        add(b + "ffn_norm.bias", w[p + "ln_2.bias"])
        add(b + "ffn_up.weight", w[p + "mlp.c_fc.weight"], transpose=True)
        add(b + "ffn_up.bias", w[p + "mlp.c_fc.bias"])
        add(b + "ffn_down.weight", w[p + "mlp.c_proj.weight"], transpose=True)
        add(b + "ffn_down.bias", w[p + "mlp.c_proj.bias"])
    add("output_norm.weight", w["ln_f.weight"])
    add("output_norm.bias", w["ln_f.bias"])
    add("output.weight", w.get("lm_head.weight", w["wte.weight"]))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
