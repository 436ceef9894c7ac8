// llama.cpp CPU speed on the reference model, for comparison with our engine.
// Prefill: one batch of a ~200-token prompt. Decode: 128 greedy tokens one at
// a time after a short prompt. Prints the median of REPS runs per thread count.
//
// Usage: node bench.mjs [threads...]   (default: 1 2)
import {execFileSync} from "node:child_process";
import {createContext, loadModel, modelPath} from "./common.mjs";

const REPS = 3;
const N_DECODE = 128;
const PROMPT =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of " +
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, " +
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had " +
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going " +
    "direct the other way. In short, the period was so far like the present period, that some of its " +
    "noisiest authorities insisted on its being received, for good or for evil, in the superlative degree " +
    "of comparison only. There were a king with a large jaw and a queen with a plain face, on the throne of " +
    "England; there were a king with a large jaw and a queen with a fair face, on the throne of France.";

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const threadCounts = process.argv.slice(2).map(Number);
if (threadCounts.length === 0) threadCounts.push(1, 2);

const t0 = performance.now();
const {model} = await loadModel(modelPath());
console.log(`model load: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
const promptTokens = model.tokenize(PROMPT, true);

for (const threads of threadCounts) {
    const prefill = [];
    const decode = [];
    for (let r = 0; r < REPS; r++) {
        const ctx = await createContext(model, 1024, threads);
        const seq = ctx.getSequence();
        let t = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(promptTokens);
        prefill.push(promptTokens.length / ((performance.now() - t) / 1000));

        await seq.clearHistory();
        const first = promptTokens.slice(0, 8);
        await seq.evaluateWithoutGeneratingNewTokens(first.slice(0, -1));
        t = performance.now();
        let n = 0;
        // Greedy, and EOS is yielded rather than stopping, so exactly N_DECODE
        // tokens are decoded (the first includes a 1-token evaluation).
        for await (const _ of seq.evaluate(first.slice(-1), {temperature: 0, yieldEogToken: true})) {
            if (++n >= N_DECODE) break;
        }
        decode.push(n / ((performance.now() - t) / 1000));
        await ctx.dispose();
    }
    console.log(
        `threads=${threads}: prefill ${median(prefill).toFixed(1)} tok/s (${promptTokens.length}-token prompt), ` +
        `decode ${median(decode).toFixed(1)} tok/s (${N_DECODE} tokens); ` +
        `runs prefill [${prefill.map((x) => x.toFixed(0))}] decode [${decode.map((x) => x.toFixed(0))}]`,
    );
}
console.log(`load average: ${execFileSync("cat", ["/proc/loadavg"], {encoding: "utf8"}).trim()}`);
process.exit(0);
