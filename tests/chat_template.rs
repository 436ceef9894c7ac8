//! Chat templates: SmolLM2's own `tokenizer.chat_template` (read from the real GGUF) rendered
//! with minijinja must give exactly the strings HF / @huggingface/jinja give, and those strings
//! must tokenise to llama.cpp's prompt tokens (tests/data/smollm2_greedy.json).
//! Missing files fail the test unless MOBILELLM_ALLOW_MISSING_MODEL=1.

mod common;

use std::path::PathBuf;

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::tokenizer::{render_chat, ChatMessage, Tokenizer};

fn smollm2() -> Option<Tokenizer> {
    let dir = common::cache_dir();
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    match std::fs::read(&path) {
        Ok(bytes) => Some(Tokenizer::from_gguf(&GgufFile::parse(&bytes).expect("parse")).expect("tokenizer")),
        Err(e) if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") => {
            eprintln!("NOTICE: skipping, {} is missing ({e}); run scripts/fetch_model.sh", path.display());
            None
        }
        Err(e) => panic!("{} is missing ({e}); run scripts/fetch_model.sh (or MOBILELLM_ALLOW_MISSING_MODEL=1)", path.display()),
    }
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

fn render(tok: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let bos = tok.bos_id.and_then(|i| tok.token_text(i)).unwrap_or_default();
    let eos = tok.eos_id.and_then(|i| tok.token_text(i)).unwrap_or_default();
    render_chat(tok.chat_template.as_deref(), messages, add_generation_prompt, &bos, &eos).expect("render")
}

const DEFAULT_SYSTEM: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

#[test]
fn smollm2_single_turn_adds_default_system_prompt() {
    let Some(tok) = smollm2() else { return };
    let got = render(&tok, &[msg("user", "What is the capital of France?")], true);
    let want = format!("{DEFAULT_SYSTEM}<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(got, want);
    // Without the generation prompt the assistant header is absent.
    let got = render(&tok, &[msg("user", "Hi")], false);
    assert_eq!(got, format!("{DEFAULT_SYSTEM}<|im_start|>user\nHi<|im_end|>\n"));
}

#[test]
fn smollm2_multi_turn_with_system_message() {
    let Some(tok) = smollm2() else { return };
    let m = [msg("system", "Answer in French."), msg("user", "Hello"), msg("assistant", "Bonjour !"), msg("user", "Thanks")];
    let got = render(&tok, &m, true);
    let want = "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nBonjour !<|im_end|>\n<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(got, want);
}

/// The chat prompts llama.cpp was given in smollm2_greedy.json: same text, same tokens.
#[test]
fn smollm2_chat_prompts_match_llama_cpp_tokens() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_greedy.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).expect("tests/data/smollm2_greedy.json")).expect("JSON");
    let Some(tok) = smollm2() else { return };
    let mut n = 0;
    for p in json["prompts"].as_array().expect("prompts") {
        let text = p["text"].as_str().expect("text");
        if p["kind"] == "chat" {
            let user = p["user_message"].as_str().expect("user_message");
            assert_eq!(render(&tok, &[msg("user", user)], true), text, "prompt {}", p["name"]);
            n += 1;
        }
        let want: Vec<u32> = p["prompt_tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, tok.add_bos).expect("encode");
        assert_eq!(got, want, "prompt {} tokens", p["name"]);
    }
    assert!(n >= 3, "only {n} chat prompts");
}

/// llama.cpp's collection of real chat templates (scripts/fetch_vocab.sh) rendered as
/// @huggingface/jinja renders them (tests/data/chat_templates.json, from
/// tools/reference/gen_chat_templates.mjs).
#[test]
fn real_templates_render_as_hf_jinja() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).expect("tests/data/chat_templates.json")).expect("JSON");
    let dir = common::cache_dir().join("templates");
    if !dir.is_dir() {
        if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") {
            eprintln!("NOTICE: skipping, {} is missing; run scripts/fetch_vocab.sh", dir.display());
            return;
        }
        panic!("{} is missing; run scripts/fetch_vocab.sh (or MOBILELLM_ALLOW_MISSING_MODEL=1)", dir.display());
    }
    let conversations: Vec<Vec<ChatMessage>> = serde_json::from_value(json["conversations"].clone()).expect("conversations");
    let (bos, eos) = (json["bos_token"].as_str().unwrap(), json["eos_token"].as_str().unwrap());
    let cases = json["cases"].as_array().expect("cases");
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let file = c["file"].as_str().unwrap();
        let template = std::fs::read_to_string(dir.join(file)).expect("template file");
        let messages = &conversations[c["conversation"].as_u64().unwrap() as usize];
        let want = c["text"].as_str().unwrap();
        match render_chat(Some(&template), messages, c["add_generation_prompt"].as_bool().unwrap(), bos, eos) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let at = got.chars().zip(want.chars()).take_while(|(a, b)| a == b).count();
                let near = |s: &str| s.chars().skip(at.saturating_sub(30)).take(90).collect::<String>();
                failures.push(format!("{file} (conversation {}): differs at char {at}\n got:  {:?}\n want: {:?}", c["conversation"], near(&got), near(want)));
            }
            Err(e) => failures.push(format!("{file} (conversation {}): {e}", c["conversation"])),
        }
    }
    assert!(failures.is_empty(), "{} of {} renders differ; first: {}", failures.len(), cases.len(), failures[0]);
}

// ---- Limits: real templates far below them, hostile templates stopped fast in bounded memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use mobilellm_web::tokenizer::{chat_input_bytes, render_chat_with_stats, ChatLimits, RenderStats};

/// Counts this thread's live heap bytes and their peak, so a test measures its own render even
/// while other tests run on other threads.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        System.alloc_zeroed(layout)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the peak of this thread's heap above the level at the
/// start, in bytes.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, i64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

fn templates_dir() -> Option<PathBuf> {
    let dir = common::cache_dir().join("templates");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") {
        eprintln!("NOTICE: skipping, {} is missing; run scripts/fetch_vocab.sh", dir.display());
        return None;
    }
    panic!("{} is missing; run scripts/fetch_vocab.sh (or MOBILELLM_ALLOW_MISSING_MODEL=1)", dir.display());
}

/// About `len` bytes of varied prose (ASCII, punctuation, newlines, some non-ASCII), different
/// for each `seed`.
fn prose(seed: usize, len: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "model",
        "answers",
        "questions",
        "about",
        "rivers,",
        "villages",
        "and",
        "small",
        "things.",
        "Naïve",
        "café",
        "über",
        "résumé",
        "—",
        "\"quoted\"",
        "{braces}",
        "<tags>",
        "x = 3 * (y + 2);",
        "done!",
        "Why?",
        "'single'",
        "tab\there",
        "line\nbreak",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut x = seed as u64 * 2_654_435_761 + 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        s.push(if x.is_multiple_of(11) { '\n' } else { ' ' });
    }
    s
}

/// A system message, then `turns` user/assistant messages of about `len` bytes, ending with a
/// user message.
fn long_conversation(turns: usize, len: usize, system: bool) -> Vec<ChatMessage> {
    let mut m = Vec::new();
    if system {
        m.push(msg("system", &prose(0, len)));
    }
    for i in 0..turns {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        m.push(msg(role, &prose(i + 1, len)));
    }
    if turns.is_multiple_of(2) {
        m.push(msg("user", &prose(turns + 1, len)));
    }
    m
}

/// One rendering: which (template, conversation, add_generation_prompt), input bytes, stats, peak
/// heap bytes, time.
type Row = (String, usize, RenderStats, i64, Duration);

/// Every template of llama.cpp's collection renders 50-turn conversations of 2 KB messages with a
/// wide margin below the limits. Prints the measurements the limits were chosen from.
#[test]
fn real_templates_stay_far_below_the_limits() {
    let Some(dir) = templates_dir() else { return };
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
    let (bos, eos) = (json["bos_token"].as_str().unwrap(), json["eos_token"].as_str().unwrap());
    let mut files: Vec<&str> = json["cases"].as_array().unwrap().iter().map(|c| c["file"].as_str().unwrap()).collect();
    files.sort();
    files.dedup();
    let conversations = [long_conversation(50, 2048, true), long_conversation(50, 2048, false), long_conversation(0, 100, false)];
    let base = ChatLimits::BASE;
    let mut rows: Vec<Row> = Vec::new();
    let mut unrendered = Vec::new();
    for file in &files {
        let template = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut any = false;
        for (k, conv) in conversations.iter().enumerate() {
            for agp in [true, false] {
                let start = Instant::now();
                let (r, peak) = peak_heap(|| render_chat_with_stats(Some(&template), conv, agp, bos, eos, None));
                let took = start.elapsed();
                match r {
                    Ok((text, stats)) => {
                        any = true;
                        assert_eq!(stats.output_bytes, text.len() as u64);
                        rows.push((format!("{file} #{k} agp={agp}"), chat_input_bytes(conv, bos, eos), stats, peak, took));
                    }
                    // Templates that refuse a conversation shape (e.g. no system role) refuse it
                    // with their own raise_exception, never with a limit.
                    Err(e) => assert!(!e.to_string().contains("limit") && !e.to_string().contains("steps"), "{file} #{k}: {e}"),
                }
            }
        }
        if !any {
            unrendered.push(*file);
        }
    }
    assert!(unrendered.len() <= 3, "templates that rendered none of the conversations: {unrendered:?}");
    let max = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    let fuel = max(&|r| r.2.fuel as f64);
    let work = max(&|r| r.2.work as f64);
    let memory = max(&|r| r.2.memory as f64);
    let heap = max(&|r| r.3 as f64);
    let secs = max(&|r| r.4.as_secs_f64());
    // Usage relative to the limits that render would get (scaled by its input), worst case.
    let worst = |f: &dyn Fn(&RenderStats, &ChatLimits) -> f64| rows.iter().map(|r| f(&r.2, &ChatLimits::for_input(r.1))).fold(0.0, f64::max);
    let fuel_share = worst(&|s, l| s.fuel as f64 / l.fuel as f64);
    let work_share = worst(&|s, l| s.work as f64 / l.work as f64);
    let memory_share = worst(&|s, l| s.memory as f64 / l.memory as f64);
    eprintln!("chat template limits: {} renders of {} templates (50 turns x 2 KB, ~{} KB input)", rows.len(), files.len() - unrendered.len(), rows[0].1 / 1024);
    eprintln!(
        "  max fuel {fuel:.0} steps, work {:.2} M units, memory {:.2} MB, heap peak {:.2} MB, time {:.1} ms",
        work / 1e6,
        memory / 1e6,
        heap / 1e6,
        secs * 1e3
    );
    eprintln!("  worst share of the scaled limits: fuel {:.1}%, work {:.1}%, memory {:.1}%", fuel_share * 100.0, work_share * 100.0, memory_share * 100.0);
    eprintln!("  base limits: fuel {}, work {} M, memory {} MiB", base.fuel, base.work >> 20, base.memory >> 20);
    for key in [0usize, 1, 2] {
        let mut sorted: Vec<_> = rows.iter().collect();
        sorted.sort_by_key(|r| std::cmp::Reverse([r.2.fuel, r.2.work, r.2.memory][key]));
        let r = sorted[0];
        eprintln!("  top {}: {} (fuel {}, work {}, memory {})", ["fuel", "work", "memory"][key], r.0, r.2.fuel, r.2.work, r.2.memory);
    }
    // A margin of at least 10x on every limit.
    assert!(fuel_share < 0.1 && work_share < 0.1 && memory_share < 0.1, "a real template uses more than 10% of a limit");
}

/// Renders `template` on a one-message chat: it must fail with a ChatTemplateError mentioning
/// `expect`, within a second, with this thread's heap never more than 48 MB above where it
/// started; and a real template must still render afterwards.
fn assert_stopped(name: &str, template: &str, expect: &str) -> (Duration, i64) {
    let messages = [msg("system", "Be brief."), msg("user", "Hello there")];
    let start = Instant::now();
    let (r, peak) = peak_heap(|| render_chat(Some(template), &messages, true, "<s>", "</s>"));
    let took = start.elapsed();
    let err = match r {
        Ok(text) => panic!("{name}: rendered {} bytes instead of failing", text.len()),
        Err(e) => e,
    };
    assert_eq!(err.code(), "ChatTemplateError", "{name}: {err}");
    let text = err.to_string();
    assert!(text.contains(expect), "{name}: expected {expect:?} in: {text}");
    eprintln!("{name:<28} {:>7.1} ms {:>7.1} MB  {}", took.as_secs_f64() * 1e3, peak as f64 / 1e6, text.chars().take(150).collect::<String>());
    assert!(took < Duration::from_secs(1), "{name}: took {took:?}");
    assert!(peak < 48 << 20, "{name}: heap peak {peak} bytes");
    let ok = render_chat(Some("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"), &messages, true, "<s>", "</s>")
        .expect("a plain template after a hostile one");
    assert_eq!(ok, "<system>Be brief.<user>Hello there");
    (took, peak)
}

const STEPS: &str = "steps";
const MEMORY: &str = "memory limit";
const WORK: &str = "work limit";

#[test]
fn hostile_templates_fail_fast_in_bounded_memory() {
    let cases: &[(&str, &str, &str)] = &[
        // Loops: fuel.
        ("nested loops", "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", STEPS),
        ("nested loops printing", "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}", STEPS),
        ("loop over messages forever", "{% for a in range(100000) %}{% for m in messages %}{% for c in m.content %}{{ c }}{% endfor %}{% endfor %}{% endfor %}", STEPS),
        ("macro fan-out", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(24) }}", STEPS),
        // Recursion.
        ("deep macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        ("recursive loop", "{% for x in [[1]] recursive %}{{ loop([[1]]) }}{% endfor %}", "recursion"),
        // Strings growing: memory.
        ("string doubling ~", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", MEMORY),
        ("string doubling +", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}", MEMORY),
        ("string doubling *", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s * 2 %}{% endfor %}{{ ns.s|length }}", MEMORY),
        ("doubling by macro", "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('x', 45) }}", MEMORY),
        ("doubling in one expression", &format!("{{% set a = 'xxxxxxxxxxxxxxxx' %}}{}{{{{ a|length }}}}", (0..40).map(|_| "{% set a = a ~ a %}").collect::<String>()), MEMORY),
        ("huge * repetition", "{{ 'x' * 1000000000 }}", MEMORY),
        ("* just below minijinja's cap", "{{ ('x' * 90000000)|length }}", MEMORY),
        ("const-folded repetition", "{{ ('ab' * 50000000) ~ ('ab' * 50000000) }}", MEMORY),
        ("accumulating output", "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 100 %}{% endfor %}", "limit"),
        ("kept copies of an accumulation", "{% set ns = namespace(s='x' * 1000000, l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + [ns.s] %}{% set ns.s = ns.s ~ 'y' %}{% endfor %}", MEMORY),
        ("captured output", "{% macro m() %}{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endmacro %}{% for i in range(1000) %}{% set x = m() %}{% endfor %}", MEMORY),
        ("set block", "{% set x %}{% for i in range(1000) %}{% for j in range(1000) %}yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy{% endfor %}{% endfor %}{% endset %}", MEMORY),
        // Filters that write more than they read.
        ("replace amplification", "{{ ('x' * 1000)|replace('', 'y' * 100000) }}", MEMORY),
        ("replace method", "{{ ('x' * 1000).replace('x', 'y' * 100000) }}", MEMORY),
        ("indent", "{{ ('\n' * 100000)|indent(100000) }}", MEMORY),
        ("join with a huge separator", "{{ range(100000)|join('x' * 100000) }}", MEMORY),
        ("join of big floats", "{{ ([1e308] * 100000)|join }}", MEMORY),
        ("format width", "{{ '%999999999s'|format('x') }}", MEMORY),
        ("format precision", "{{ '%.999999999f'|format(1.5) }}", MEMORY),
        ("tojson indent", "{{ range(1000)|list|tojson(indent=1000000) }}", MEMORY),
        ("string to list", "{{ ('x' * 10000000)|list|length }}", MEMORY),
        ("split into pieces", "{{ (' ' * 10000000).split(' ')|length }}", MEMORY),
        ("batch with fill", "{{ [1]|batch(1000000000, 0)|list|length }}", MEMORY),
        ("slice with many slices", "{{ [1]|slice(1000000000)|list|length }}", MEMORY),
        ("map to a bounded filter", "{{ range(100000)|map('indent', 100000)|list|length }}", MEMORY),
        ("pprint", "{% set ns = namespace(l=[1]) %}{% for i in range(25) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|pprint }}", "limit"),
        // Lists growing: memory.
        ("giant list", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i ~ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxx'] %}{% endfor %}{{ ns.l|length }}", MEMORY),
        ("list doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}", MEMORY),
        ("list repetition", "{{ ([1, 2, 3] * 1000000000)|length }}", MEMORY),
        ("range", "{{ range(1000000000)|length }}", "range has too many elements"),
        ("range to list", "{{ range(100000)|list|map('string')|join }}{% for i in range(1000) %}{{ range(100000)|list|length }}{% endfor %}", "limit"),
        // Values shared inside themselves (unfold to 2^n) or nested without end.
        ("DAG compared", "{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l == ns.l }}", "limit"),
        ("flat DAG printed", "{% set a = ['x' * 1000] %}{% set b = a + a + a + a + a + a + a + a %}{% set c = b + b + b + b + b + b + b + b %}{% set d = c + c + c + c + c + c + c + c %}{% set e = d + d + d + d + d + d + d + d %}{% set f = e + e + e + e + e + e + e + e %}{% set g = f + f + f + f + f + f + f + f %}{{ g }}", MEMORY),
        ("flat DAG joined", "{% set a = ['x' * 1000] * 1000 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}{% set c = [b, b, b, b, b, b, b, b, b, b] %}{% set d = [c, c, c, c, c, c, c, c, c, c] %}{{ d|join }}", "limit"),
        ("deep nesting", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "nested"),
        ("namespace in itself", "{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}", "namespace"),
        ("namespace in a list in itself", "{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns }}", "namespace"),
        ("chain of loop objects", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% for x in [ns.l] %}{% set ns.l = [loop] %}{% endfor %}{% endfor %}", "may not store"),
        ("loop.changed keeps itself", "{% for x in range(10) %}{{ loop.changed(loop) }}{% endfor %}", "may not store"),
        // Big operands in cheap-looking steps: work.
        ("in over a big string", "{% set s = 'x' * 4000000 %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}", WORK),
        ("compare big strings", "{% set s = 'x' * 2000000 %}{% set t = 'x' * 2000000 %}{% for i in range(100000) %}{% if s == t %}{% endif %}{% endfor %}", WORK),
        ("index a big string", "{% set s = 'x' * 4000000 %}{% for i in range(100000) %}{{ s[-1] }}{% endfor %}", WORK),
        ("sort a big list", "{% set l = range(100000)|list %}{% for i in range(1000) %}{{ (l|sort|first) }}{% endfor %}", "limit"),
        ("select in", "{{ range(50000)|select('in', range(50000)|list)|list|length }}", "limit"),
        ("sum of strings", "{{ (['x' * 1000] * 4000)|sum(start='')|length }}", "limit"),
        ("sum of lists", "{{ ([range(1000)|list] * 1000)|sum(start=[])|length }}", "limit"),
        ("many namespaces", "{% for i in range(100000) %}{% set n = namespace() %}{% endfor %}", "namespaces"),
        // Size of the template itself.
        ("huge template", &"x".repeat(300 << 10), "bytes"),
    ];
    eprintln!("{:<28} {:>10} {:>10}  error", "hostile template", "time", "heap peak");
    let mut worst = (Duration::ZERO, 0i64);
    for (name, template, expect) in cases {
        let (t, p) = assert_stopped(name, template, expect);
        worst = (worst.0.max(t), worst.1.max(p));
    }
    eprintln!("worst: {:.1} ms, {:.1} MB", worst.0.as_secs_f64() * 1e3, worst.1 as f64 / 1e6);
}

/// The deepest recursion the limits allow (macros, recursive loops, nested expressions and
/// blocks up to the parser's limit) fits in a 1 MiB stack, the default of wasm32 (in the
/// browser the engine renders on the worker's main stack).
#[test]
fn deepest_recursion_fits_a_wasm_sized_stack() {
    // Measured natively (release): these need less than 256 KiB.
    let deep_expr = format!("{{{{ {}1{} }}}}", "(".repeat(140), ")".repeat(140));
    let deep_blocks = format!("{}x{}", "{% if true %}".repeat(140), "{% endif %}".repeat(140));
    let cases = [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}".to_string(),
        "{% macro f(n) %}{% for i in [1] %}{% with x = n %}{{ f(n + 1) }}{% endwith %}{% endfor %}{% endmacro %}{{ f(0) }}".to_string(),
        "{% for x in [[1]] recursive %}{{ loop([[1]]) }}{% endfor %}".to_string(),
        "{% macro f(n) %}{{ caller() if caller }}{% call f(n + 1) %}x{% endcall %}{% endmacro %}{{ f(0) }}".to_string(),
        format!("{{{{ {}1{} }}}}", "(".repeat(40), ")".repeat(40)),
        deep_expr,
        deep_blocks,
        format!("{{{{ {}{} }}}}", "[".repeat(3000), "]".repeat(3000)),
        format!("{{{{ {}{} }}}}", "[".repeat(40), "]".repeat(40)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            for t in &cases {
                // Errors are fine (recursion limit, parser depth); overflowing the stack is not.
                let r = render_chat(Some(t), &[msg("user", "hi")], true, "", "");
                eprintln!("{:?}", r.map(|s| s.len()).map_err(|e| e.to_string().chars().take(100).collect::<String>()));
            }
        })
        .unwrap();
    handle.join().expect("no stack overflow");
}

/// A tiny synthetic model whose GGUF carries `template` as tokenizer.chat_template.
fn model_with_template(name: &str, template: &str) -> PathBuf {
    use mobilellm_web::gguf::{GgufWriter, MetaValue};
    use mobilellm_web::model::synth::{synth_gguf, SynthSpec};
    use mobilellm_web::model::Arch;
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in file.metadata.iter().filter(|(k, _)| k != "tokenizer.chat_template" && k != "general.alignment") {
        w.add_meta(k, v.clone());
    }
    w.add_meta("tokenizer.chat_template", MetaValue::String(template.into()));
    for t in &file.tensors {
        w.add_tensor(&t.name, &t.dims, t.ty);
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| Ok(file.tensor_data(&bytes, &file.tensors[i]).to_vec())).unwrap();
    let dir = std::env::temp_dir().join(format!("mobilellm-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// `mobilellm generate --chat` on a model whose template never ends: a typed error and exit 1
/// within seconds (GPU start-up included), where it used to hang; the same model with a plain
/// template generates.
#[test]
fn cli_chat_with_a_hostile_template_fails_fast() {
    let run = |model: &PathBuf| {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mobilellm"))
            .args(["generate", "--model", model.to_str().unwrap(), "--chat", "--prompt", "Hello", "-n", "2", "--temperature", "0"])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), start.elapsed())
    };
    let hostile = model_with_template("loops.gguf", "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}");
    let (code, err, took) = run(&hostile);
    eprintln!("hostile: exit {code:?} in {took:?}: {}", err.trim());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[ChatTemplateError]") && err.contains("steps"), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");

    let doubling =
        model_with_template("doubling.gguf", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}");
    let (code, err, took) = run(&doubling);
    eprintln!("doubling: exit {code:?} in {took:?}: {}", err.trim());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[ChatTemplateError]") && err.contains("memory limit"), "{err}");

    let plain = model_with_template("plain.gguf", "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>");
    let (code, err, _) = run(&plain);
    assert_eq!(code, Some(0), "{err}");
}

/// The guards keep unusual but harmless templates working: objects compared and passed around,
/// namespaces holding plain data, accumulation with `+` and `~`, slices and subscripts.
#[test]
fn unusual_but_harmless_templates_still_render() {
    let m = [msg("system", "S"), msg("user", "Hi"), msg("assistant", "Yo"), msg("user", "Bye")];
    let cases = [
        ("{% for x in [1, 2] %}{{ loop == 1 }}{{ loop.index }}{% endfor %}", "False1False2"),
        ("{% macro f() %}x{% endmacro %}{{ f == f }}{{ f() }}", "Truex"),
        ("{% set ns = namespace(l=[], d={}, s='', n=0) %}{% for m in messages %}{% set ns.l = ns.l + [m.role] %}{% set ns.s = ns.s ~ m.content ~ '|' %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.l|join(',') }} {{ ns.s }} {{ ns.n }}", "system,user,assistant,user S|Hi|Yo|Bye| 4"),
        ("{{ messages[1:3]|map(attribute='content')|join }}{{ messages[-1]['content'][::-1] }}{{ (messages|last).role[0] }}", "HiYoeyBu"),
        ("{{ dict(a=messages[0], b=[1, 2])|tojson }}", "{\"a\": {\"content\": \"S\", \"role\": \"system\"}, \"b\": [1, 2]}"),
        ("{% set x = {'k': [messages|length, 'v' * 3]} %}{{ x.k[1] }}{{ x['k'][0] + 1 }}{{ 'Hi' in messages|map(attribute='content') }}", "vvv5True"),
    ];
    for (t, want) in cases {
        let got = render_chat(Some(t), &m, false, "", "").unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(got, want, "{t}");
    }
}

/// Macros capture the variables they use; chains and cycles built through them (which minijinja
/// breaks at the end of a render) neither crash nor outlive the render's limits.
#[test]
fn macro_closure_chains_end_cleanly() {
    let cases = [
        "{% set ns = namespace(l=[]) %}{% for i in range(50000) %}{% macro m() %}{{ ns.l }}{% endmacro %}{% set ns.l = [m] %}{% endfor %}{{ ns.l }}",
        "{% set ns = namespace(l=[]) %}{% for i in range(50000) %}{% set x = ns.l %}{% macro m() %}{{ x }}{% endmacro %}{% set ns.l = [m] %}{% endfor %}{{ ns.l }}{{ ns.l[0]() }}",
    ];
    for t in cases {
        let start = Instant::now();
        let r = render_chat(Some(t), &[msg("user", "hi")], true, "", "");
        eprintln!("{:?} in {:?}", r.as_ref().map(String::len).map_err(|e| e.to_string()), start.elapsed());
        if let Err(e) = r {
            assert_eq!(e.code(), "ChatTemplateError");
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
