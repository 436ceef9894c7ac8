// Writes tests/data/tokenizer_fuzz.json: llama.cpp's tokenisation (add_special=false,
// parse_special=true, i.e. no BOS, special tokens parsed) of pseudo-random texts built from
// pieces that stress the pre-tokenizers: Unicode letters/digits/punctuation of many scripts,
// unusual whitespace, combining marks, emoji, contractions, digit runs and special tokens.
// Vocabularies: the SmolLM2 GGUF (gpt2/smollm) and llama.cpp's test vocabularies fetched by
// scripts/fetch_vocab.sh (llama-spm, llama-bpe, gpt-2).
//
// Usage: node gen_tokenizer_fuzz.mjs   (MODEL_PATH=... to skip scripts/fetch_model.sh)
import {writeFileSync} from "node:fs";
import {execFileSync} from "node:child_process";
import path from "node:path";
import {getLlama} from "node-llama-cpp";
import {DATA_DIR, GENERATOR, REPO, modelPath, sha256File} from "./common.mjs";

const N_TEXTS = 400;
const PIECES = [
    "abcXYZ", "0123456789", " ", "  ", "\n", "\t", "\r\n", "'s", "'LL", "'re", ".,!?;:-()[]{}\"'",
    "$+<=>^~|`@#%&*_/\\", "é", "ß", "Ä", "ñ", "北京", "中文", "日本語", "한국어", "русский", "ελληνικά",
    "עברית", "العربية", "हिन्दी", "ไทย", "\u00a0", "\u2009", "\u3000", "\u0085", "\u200b", "\u2028",
    "\u0301", "e\u0301", "٣", "²", "½", "Ⅻ", "①", "🌍", "🔥", "👨‍👩‍👧", "🦙", "™", "©", "€", "£", "\u000b",
    "\u000c", "\u001f", "\u007f", "\ufffd", "𝔘𝔫𝔦", "ǅ", "ʰ", "〇", "㊀", "Hello", " world", "don't",
    "I'M", "12345678", "3.14", "<|im_start|>", "<|im_end|>", "<reponame>", "<s>", "</s>", "<unk>",
    "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>",
];

// A fixed LCG, so the texts are the same on every run.
let state = 12345;
const rnd = (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
};
const texts = [];
for (let i = 0; i < N_TEXTS; i++) {
    let t = "";
    const n = 1 + rnd(12);
    for (let k = 0; k < n; k++) t += PIECES[rnd(PIECES.length)];
    texts.push(t);
}

const vocabDir = execFileSync("bash", [path.join(REPO, "scripts/fetch_vocab.sh")], {encoding: "utf8"}).trim();
const model = modelPath();
const vocabs = [
    ["smollm2", model, false],
    ["llama-spm", path.join(vocabDir, "ggml-vocab-llama-spm.gguf"), true],
    ["llama-bpe", path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), true],
    ["gpt-2", path.join(vocabDir, "ggml-vocab-gpt-2.gguf"), true],
];

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const out = {generator: GENERATOR, call: "model.tokenize(text, true): llama_tokenize(add_special=false, parse_special=true)", texts, vocabs: {}};
for (const [name, file, vocabOnly] of vocabs) {
    const m = await llama.loadModel({modelPath: file, gpuLayers: 0, vocabOnly});
    out.vocabs[name] = {file: path.basename(file), sha256: await sha256File(file), tokens: texts.map((t) => Array.from(m.tokenize(t, true)))};
    await m.dispose();
}
const dest = path.join(DATA_DIR, "tokenizer_fuzz.json");
writeFileSync(dest, JSON.stringify(out) + "\n");
console.log(`wrote ${dest}: ${texts.length} texts x ${vocabs.length} vocabularies`);
