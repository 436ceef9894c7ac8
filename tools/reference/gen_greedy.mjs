// Writes tests/data/smollm2_greedy.json: for each prompt, llama.cpp's
// tokenisation, 64 greedy tokens (EOS does not stop generation) and the 5
// largest raw logits at every generated position.
//
// Usage: node gen_greedy.mjs   (MODEL_PATH=... to skip scripts/fetch_model.sh)
import {writeFileSync} from "node:fs";
import path from "node:path";
import {
    DATA_DIR, GENERATOR, PROMPTS, THREADS, compactJson, createContext, ggufTokenizerInfo, loadModel,
    modelPath, promptText, sha256File,
} from "./common.mjs";

const N_GEN = 64;
const TOP_K = 5;

// Greedy sampling (temperature 0 => llama.cpp's greedy sampler alone, no
// penalties), plus the top-5 logits of the distribution it sampled from.
// With only the greedy sampler in the chain, node-llama-cpp reports the
// logits llama.cpp produced, unmodified.
const GENERATE_NEXT = {
    token: true,
    logits: {filter: {includeTop: TOP_K}},
    options: {temperature: 0},
};

function round(x) {
    return Number(x.toFixed(5));
}

async function generate(sequence, promptTokens) {
    await sequence.clearHistory();
    const tokens = [];
    const top = [];
    // The first step evaluates the whole prompt; only its last position
    // needs logits. Each later step feeds back the token just chosen.
    let input = promptTokens.map((t, i) => (i === promptTokens.length - 1 ? [t, {generateNext: GENERATE_NEXT}] : t));
    for (let step = 0; step < N_GEN; step++) {
        const out = await sequence.controlledEvaluate(input);
        const next = out[input.length - 1]?.next;
        if (next?.token == null) throw new Error(`no token sampled at step ${step}`);
        const topK = [...next.logits.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP_K);
        if (topK[0][0] !== next.token && topK[0][1] !== next.logits.get(next.token))
            throw new Error(`greedy token ${next.token} is not the arg-max at step ${step}`);
        tokens.push(next.token);
        top.push(topK.map(([id, logit]) => [id, round(logit)]));
        input = [[next.token, {generateNext: GENERATE_NEXT}]];
    }
    return {tokens, top};
}

const file = modelPath();
const sha = await sha256File(file);
const tk = await ggufTokenizerInfo(file);
const {model} = await loadModel(file);
const context = await createContext(model);
const sequence = context.getSequence();

const prompts = [];
for (const p of PROMPTS) {
    const text = promptText(p, tk.chatTemplate);
    // common_tokenize(text, add_special=false, parse_special=true); the
    // model's metadata decides whether a BOS goes in front.
    const body = model.tokenize(text, true);
    const promptTokens = tk.addBos ? [tk.bosId, ...body] : body;
    const t0 = performance.now();
    const {tokens, top} = await generate(sequence, promptTokens);
    const ms = performance.now() - t0;
    const eogAt = tokens.flatMap((t, i) => (model.isEogToken(t) ? [i] : []));
    const entry = {
        name: p.name,
        kind: p.kind,
        text,
        prompt_tokens: promptTokens,
        tokens,
        output_text: model.detokenize(tokens, true),
        top,
    };
    if (eogAt.length > 0) {
        entry.note = `end-of-generation token(s) at positions ${eogAt.join(", ")}; generation continued past them`;
    }
    if (p.kind === "chat") entry.user_message = p.input;
    prompts.push(entry);
    console.error(`${p.name}: ${promptTokens.length} prompt tokens, ${ms.toFixed(0)} ms, eog at [${eogAt}]`);
    console.error(`  ${JSON.stringify(entry.output_text)}`);
}

const result = {
    model_sha256: sha,
    model_file: path.basename(file),
    generator: GENERATOR,
    settings: {
        threads: THREADS,
        flash_attention: false,
        sampling: "greedy (temperature 0, no penalties), EOS does not stop generation",
        add_bos: tk.addBos,
        tokenize: "special tokens parsed",
        top: `${TOP_K} largest raw logits at each generated position, sorted descending, rounded to 5 decimals; top[i] is the distribution tokens[i] was chosen from`,
    },
    prompts,
};
const out = path.join(DATA_DIR, "smollm2_greedy.json");
writeFileSync(out, compactJson(result) + "\n");
console.error(`wrote ${out}`);
process.exit(0);
