// Writes tests/data/chat_templates.json: llama.cpp's collection of real chat templates
// (models/templates/*.jinja, extracted by scripts/fetch_vocab.sh) rendered with
// @huggingface/jinja (the JS port of HF transformers' template engine) for two conversations,
// with and without the generation prompt. Only the outputs are stored; the test reads the
// templates from the cache. Templates that print today's date (strftime_now) are left out
// (their output changes daily), as are renders that @huggingface/jinja itself rejects.
//
// Usage: node gen_chat_templates.mjs
import {readdirSync, readFileSync, writeFileSync} from "node:fs";
import {execFileSync} from "node:child_process";
import path from "node:path";
import {Template} from "@huggingface/jinja";
import {DATA_DIR, REPO} from "./common.mjs";

const vocabDir = execFileSync("bash", [path.join(REPO, "scripts/fetch_vocab.sh")], {encoding: "utf8"}).trim();
const dir = path.join(path.dirname(vocabDir), "templates");
const CONVERSATIONS = [
    [{role: "user", content: "Hi there"}],
    [
        {role: "system", content: "Be brief."},
        {role: "user", content: "  What is 2+2? "},
        {role: "assistant", content: "4"},
        {role: "user", content: "Thanks! 🌍"},
    ],
];
const BOS = "<BOS>";
const EOS = "<EOS>";

const cases = [];
let skipped = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".jinja")).sort()) {
    const src = readFileSync(path.join(dir, file), "utf8");
    if (src.includes("strftime_now")) {
        skipped++;
        continue;
    }
    for (const [conversation, messages] of CONVERSATIONS.entries()) {
        for (const add_generation_prompt of [true, false]) {
            let text;
            try {
                text = new Template(src).render({messages, add_generation_prompt, bos_token: BOS, eos_token: EOS});
            } catch {
                continue;
            }
            cases.push({file, conversation, add_generation_prompt, text});
        }
    }
}
const out = {generator: "@huggingface/jinja 0.5.11", bos_token: BOS, eos_token: EOS, conversations: CONVERSATIONS, cases};
const dest = path.join(DATA_DIR, "chat_templates.json");
writeFileSync(dest, JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${dest}: ${cases.length} renders (${skipped} date-dependent templates skipped)`);
