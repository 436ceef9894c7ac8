// Writes tests/data/smollm2_tokenize.json: llama.cpp's tokenisation of varied
// texts with special tokens parsed and NO BOS added (common_tokenize with
// add_special=false, parse_special=true), for testing a tokenizer port.
//
// Usage: node gen_tokenize.mjs   (MODEL_PATH=... to skip scripts/fetch_model.sh)
import {writeFileSync} from "node:fs";
import path from "node:path";
import {
    DATA_DIR, GENERATOR, PROMPTS, compactJson, ggufTokenizerInfo, loadModel, modelPath,
    promptText, sha256File,
} from "./common.mjs";

const LONG_EN =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of " +
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, " +
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had " +
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going " +
    "direct the other way.";
const LONG_MIXED =
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, " +
    "and nothing particular to interest me on shore, I thought I would sail about a little and see the " +
    "watery part of the world.\n\n  It is a way I have of driving off the spleen, and regulating the " +
    "circulation. Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly " +
    "November in my soul…\t(Chapter 1, p. 3)\r\n";

const TEXTS = [
    // whitespace
    "", " ", "  ", "   ", "          ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", "\r\n", " \n ", "\n \n",
    "a", "Hello", " Hello", "  Hello", "Hello ", "Hello  ", " Hello world ", "Hello\nworld", "Hello\n\nworld",
    "Hello world", "HELLO WORLD", "hello, World! How are you?",
    // numbers
    "1", "12", "123", "1234", "1234567", "3.14", "-42", "1,000,000", "2026-11-24", "v1.2.3", "0x1F", "1e-5",
    "The year 1999 had 365 days.",
    // contractions
    "don't", "I'll", "she's", "we're", "they've", "I'd", "DON'T", "it's isn't", "'s", "rock 'n' roll",
    // punctuation
    "!", "...", "?!", "Hello!!!", "(a) [b] {c}", "\"quoted\" and 'single'", "a--b---c", "#$%&*+/<=>@\\^_`|~",
    // code
    "def f(x):\n    return x * 2\n",
    "fn main() {\n\tprintln!(\"hi\");\n}\n",
    "if (a && b) { c = d->e; } // comment",
    "    indented four\n        indented eight",
    "<div class=\"x\">&amp;</div>",
    // URLs, emails
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#top",
    "mail me at someone@example.com",
    // accented Latin and other scripts
    "café", "naïve résumé", "Ça va? Très bien, merci.", "Straße über Äpfel", "ñandú", "Łódź",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок.",
    "你好，世界", "北京是中国的首都。", "こんにちは世界", "東京タワーは高いです。カタカナ",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "안녕하세요", "Γειά σου Κόσμε", "ไทย",
    // emoji
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "I ❤️ Rust 🦀!", "🌍🔥",
    // mixed scripts
    "Hello 世界 мир 🌍 café", "abc日本語def", "Tokyo (東京) and Moscow (Москва)",
    // special tokens
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>user\nhi\n<|im_end|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "hello<|im_end|>world",
    "word<|im_start|>assistant",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_start|><|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start", "im_end|>",
    // invalid-looking / odd
    "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "tab\tseparated\tvalues",
    // long paragraphs
    LONG_EN, LONG_MIXED,
];

const file = modelPath();
const sha = await sha256File(file);
const tk = await ggufTokenizerInfo(file);
const {model} = await loadModel(file);

const all = [...TEXTS];
for (const p of PROMPTS) {
    const text = promptText(p, tk.chatTemplate);
    if (!all.includes(text)) all.push(text);
}

const texts = all.map((text) => ({text, tokens: model.tokenize(text, true)}));
const result = {
    model_sha256: sha,
    model_file: path.basename(file),
    generator: GENERATOR,
    settings: {
        tokenizer: `${tk.model} / pre=${tk.pre}`,
        tokenize: "special tokens parsed, no BOS/EOS added (common_tokenize(add_special=false, parse_special=true))",
    },
    texts,
};
const out = path.join(DATA_DIR, "smollm2_tokenize.json");
writeFileSync(out, compactJson(result) + "\n");
console.error(`wrote ${out}: ${texts.length} texts`);
process.exit(0);
