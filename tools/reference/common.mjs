// Shared setup for the reference generators: locating and hashing the model,
// loading it with node-llama-cpp on the CPU, and the prompt set used by both
// gen_greedy.mjs and gen_tokenize.mjs.
import {createHash} from "node:crypto";
import {createReadStream} from "node:fs";
import {execFileSync} from "node:child_process";
import {fileURLToPath} from "node:url";
import path from "node:path";
import {getLlama, readGgufFileInfo} from "node-llama-cpp";
import {Template} from "@huggingface/jinja";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../..");
export const DATA_DIR = path.join(REPO, "tests/data");
export const GENERATOR = "node-llama-cpp 3.22.1 (llama.cpp CPU)";

// The model path comes from scripts/fetch_model.sh (it downloads and
// sha256-checks the GGUF if needed), unless MODEL_PATH overrides it.
export function modelPath() {
    if (process.env.MODEL_PATH) return process.env.MODEL_PATH;
    return execFileSync("bash", [path.join(REPO, "scripts/fetch_model.sh")], {encoding: "utf8"}).trim();
}

export async function sha256File(file) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(file)) hash.update(chunk);
    return hash.digest("hex");
}

// Loads the model on the CPU only. build: "never" keeps node-llama-cpp from
// trying to fetch or compile llama.cpp (only the npm prebuilt is usable here);
// threads: 2 matters, without it evaluation is about 100x slower on this box.
export async function loadModel(file) {
    const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
    const model = await llama.loadModel({modelPath: file, gpuLayers: 0});
    return {llama, model};
}

// Generation defaults to ONE thread: llama.cpp's worker threads spin at
// barriers, so with 2 threads on a 2-core machine that is also compiling,
// evaluation becomes ~30x slower (measured: 11 s vs 0.4 s for a 36-token
// prefill under load). Matrix rows are split between threads, not partial
// sums, so the logits do not depend on the thread count (checked: identical
// files with 1 and 2 threads). REF_THREADS overrides.
export const THREADS = Number(process.env.REF_THREADS ?? 1);

export async function createContext(model, contextSize = 1024, threads = THREADS) {
    return model.createContext({
        contextSize,
        batchSize: 512,
        threads,
        flashAttention: false,
        sequences: 1,
    });
}

// Renders a single user message through the GGUF's own chat template
// (tokenizer.chat_template) with add_generation_prompt, using the same Jinja
// implementation node-llama-cpp relies on. For SmolLM2 this prepends the
// template's default system message.
export function renderChat(chatTemplate, userText) {
    const tpl = new Template(chatTemplate);
    return tpl.render({
        messages: [{role: "user", content: userText}],
        add_generation_prompt: true,
        bos_token: "<|im_start|>",
        eos_token: "<|im_end|>",
    });
}

export async function ggufTokenizerInfo(file) {
    const info = await readGgufFileInfo(file, {readTensorInfo: false});
    const tk = info.metadata.tokenizer;
    return {
        chatTemplate: tk.chat_template,
        addBos: tk.ggml.add_bos_token === true,
        bosId: tk.ggml.bos_token_id,
        eosId: tk.ggml.eos_token_id,
        pre: tk.ggml.pre,
        model: tk.ggml.model,
    };
}

// Prompts for the greedy references. "raw" texts go to the tokenizer as is;
// "chat" texts are user messages rendered through the chat template.
export const PROMPTS = [
    {name: "story", kind: "raw", input: "Once upon a time, in a small village by the river,"},
    {name: "fact", kind: "raw", input: "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was built"},
    {name: "code", kind: "raw", input: "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {name: "french", kind: "raw", input: "Paris est la capitale de la France. C'est une ville célèbre pour"},
    {name: "chinese", kind: "raw", input: "北京是中国的首都。"},
    {name: "chat_capital", kind: "chat", input: "What is the capital of France?"},
    {name: "chat_poem", kind: "chat", input: "Write a short poem about the sea."},
    {name: "chat_emoji", kind: "chat", input: "Explain what this emoji means: 🌍🔥 and say it in Chinese (中文) too."},
];

export function promptText(p, chatTemplate) {
    return p.kind === "chat" ? renderChat(chatTemplate, p.input) : p.input;
}

// JSON with objects indented but arrays kept on one line, so token lists and
// logit tables stay readable and diffs stay small.
export function compactJson(value, indent = "") {
    if (Array.isArray(value)) {
        // Arrays of objects (prompts, texts) get one element per line.
        if (value.some((v) => v !== null && typeof v === "object" && !Array.isArray(v))) {
            const inner = indent + "  ";
            return "[\n" + value.map((v) => inner + compactJson(v, inner)).join(",\n") + "\n" + indent + "]";
        }
        return "[" + value.map((v) => compactJson(v, indent)).join(",") + "]";
    }
    if (value !== null && typeof value === "object") {
        const inner = indent + "  ";
        const body = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${compactJson(v, inner)}`);
        return body.length === 0 ? "{}" : "{\n" + body.join(",\n") + "\n" + indent + "}";
    }
    return JSON.stringify(value);
}
