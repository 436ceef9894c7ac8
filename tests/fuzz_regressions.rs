//! Every input the fuzzers (fuzz/, scripts/fuzz.sh) found to crash, hang or blow up a reader,
//! replayed through the same code the fuzz target runs (fuzz/src/lib.rs), on the stable
//! toolchain. Inputs live in tests/fixtures/fuzz/<target>/; each was a finding, and each now
//! passes.
//!
//! With MOBILELLM_FUZZ_SEEDS=<dir>, `write_fuzz_seeds` also writes the seed inputs of each fuzz
//! target into <dir>/<target>/ (scripts/fuzz.sh --seed does this).

mod common;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mobilellm_web::gguf::{GgufFile, GgufWriter, MetaValue};
use mobilellm_web::model::synth::{synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use mobilellm_web::quant::GgmlType;

/// A fuzz target: its name and the function that runs one input.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 6] = [
    ("gguf_model", targets::gguf_model),
    ("gguf_tokenizer", targets::gguf_tokenizer),
    ("checkpoint", targets::checkpoint),
    ("pickle", targets::pickle),
    ("hf_tokenizer", targets::hf_tokenizer),
    ("chat_template", targets::chat_template),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz")
}

/// Each recorded finding runs to completion, quickly, on a 512 KiB stack: half the browser's
/// 1 MiB wasm stack (deep recursion on hostile input is a finding even where a native 8 MiB
/// stack survives it).
#[test]
fn recorded_fuzz_findings_pass() {
    let mut n = 0;
    for (name, run) in TARGETS {
        let dir = fixtures().join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let start = Instant::now();
            std::thread::Builder::new().stack_size(512 << 10).spawn(move || run(&data)).unwrap().join().unwrap_or_else(|_| panic!("{} failed", f.display()));
            let took = start.elapsed();
            eprintln!("{name}/{}: {took:?}", f.file_name().unwrap().to_string_lossy());
            assert!(took < Duration::from_secs(2), "{}: took {took:?}", f.display());
            n += 1;
        }
    }
    eprintln!("{n} recorded findings replayed");
}

// ---- Seeds (only with MOBILELLM_FUZZ_SEEDS).

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

/// A smaller model than `SynthSpec::tiny` (a 1-block, 32-wide llama), for small seeds.
fn small_spec(arch: Arch, weight_type: GgmlType, embd_type: GgmlType, tied: bool) -> SynthSpec {
    SynthSpec {
        dim: 32,
        n_layers: 1,
        block_repeat: if arch == Arch::MobileLlm { 2 } else { 1 },
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 16,
        ffn_dim: 32,
        context_length: 32,
        tied,
        weight_type,
        embd_type,
        ..SynthSpec::tiny(arch)
    }
}

/// `bytes` (a GGUF) rewritten with its metadata changed by `edit` (tensors unchanged).
fn with_metadata(bytes: &[u8], edit: impl FnOnce(&mut Vec<(String, MetaValue)>)) -> Vec<u8> {
    let file = GgufFile::parse(bytes).unwrap();
    let mut meta: Vec<(String, MetaValue)> = file.metadata.iter().filter(|(k, _)| k != "general.alignment").cloned().collect();
    edit(&mut meta);
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in meta {
        w.add_meta(&k, v);
    }
    for t in &file.tensors {
        w.add_tensor(&t.name, &t.dims, t.ty);
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| Ok(file.tensor_data(bytes, &file.tensors[i]).to_vec())).unwrap();
    out
}

/// A llama.cpp vocabulary GGUF cut to its first `n` tokens (merges and special ids that point
/// past them dropped), so seeds stay small.
fn truncated_vocab(bytes: &[u8], n: usize) -> Vec<u8> {
    with_metadata(bytes, |meta| {
        let tokens: Vec<String> = meta
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .and_then(|(_, v)| v.as_array())
            .map(|a| a.iter().take(n).filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for (k, v) in meta.iter() {
            let v = match (k.as_str(), v) {
                ("tokenizer.ggml.merges", MetaValue::Array { elem, values }) => {
                    let keep = values.iter().filter(|m| match m.as_str().and_then(|s| s.split_once(' ')) {
                        Some((a, b)) => known.contains(a) && known.contains(b) && known.contains(format!("{a}{b}").as_str()),
                        None => false,
                    });
                    MetaValue::Array { elem: *elem, values: keep.cloned().collect() }
                }
                (_, MetaValue::Array { elem, values }) if k.starts_with("tokenizer.ggml.") && values.len() > n => {
                    MetaValue::Array { elem: *elem, values: values[..n].to_vec() }
                }
                (_, v) if k.starts_with("tokenizer.ggml.") && k.ends_with("_token_id") && v.as_u64().is_some_and(|id| id >= n as u64) => continue,
                (_, v) => v.clone(),
            };
            out.push((k.clone(), v));
        }
        *meta = out;
    })
}

/// A synthetic model cut to its first `n` tokens: embedding (and output) rows, and the
/// tokenizer arrays if `keep_vocab`, else no tokenizer metadata at all.
fn fewer_tokens(bytes: &[u8], n: usize, keep_vocab: bool) -> Vec<u8> {
    let file = GgufFile::parse(bytes).unwrap();
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in file.metadata.iter().filter(|(k, _)| k != "general.alignment") {
        match v {
            MetaValue::Array { elem, values } if k.starts_with("tokenizer.ggml.") && keep_vocab => {
                w.add_meta(k, MetaValue::Array { elem: *elem, values: values.iter().take(n).cloned().collect() })
            }
            _ if k.starts_with("tokenizer.") => {}
            _ => w.add_meta(k, v.clone()),
        }
    }
    let rows = |name: &str| name == "token_embd.weight" || name == "output.weight";
    for t in &file.tensors {
        let mut dims = t.dims.clone();
        if rows(&t.name) {
            dims[1] = n as u64;
        }
        w.add_tensor(&t.name, &dims, t.ty);
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| {
        let t = &file.tensors[i];
        let data = file.tensor_data(bytes, t);
        Ok(if rows(&t.name) { data[..n * t.ty.bytes_for(t.dims[0]).unwrap() as usize].to_vec() } else { data.to_vec() })
    })
    .unwrap();
    out
}

/// `bytes` (a GGUF) without its tensors.
fn metadata_only(bytes: &[u8]) -> Vec<u8> {
    let file = GgufFile::parse(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata.iter().filter(|(k, _)| k != "general.alignment") {
        w.add_meta(k, v.clone());
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |_| Ok(Vec::new())).unwrap();
    out
}

fn with_text(text: &str, gguf: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(gguf);
    out
}

const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Writes the seed corpus of every fuzz target under $MOBILELLM_FUZZ_SEEDS (no-op without it).
/// The checkpoint, pickle and tokenizer.model seeds come from tests/fixtures/make_checkpoint.py
/// (scripts/fuzz.sh --seed runs it).
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("MOBILELLM_FUZZ_SEEDS").map(PathBuf::from) else { return };
    // gguf_model: synthetic models of every tensor type, both architectures, tied and not; the
    // gguf-py fixture.
    let specs = [
        ("llama_q4_1_q8_0", small_spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, true)),
        ("llama_q4_0_f16_untied", small_spec(Arch::Llama, GgmlType::Q4_0, GgmlType::F16, false)),
        ("llama_q8_0_bf16", small_spec(Arch::Llama, GgmlType::Q8_0, GgmlType::BF16, true)),
        ("mobilellm_f16_q4_1", small_spec(Arch::MobileLlm, GgmlType::F16, GgmlType::Q4_1, true)),
    ];
    let mut smallest = Vec::new();
    for (i, (name, spec)) in specs.iter().enumerate() {
        let bytes = synth_gguf(spec).unwrap();
        // 16 tokens instead of 300 (one seed keeps a 16-token vocabulary, the others none, so
        // the embedding's rows give the vocabulary size): 3-6 KB models.
        write(&dir, "gguf_model", &format!("{name}.gguf"), &fewer_tokens(&bytes, 16, i == 0));
        if smallest.is_empty() || bytes.len() < smallest.len() {
            smallest = bytes;
        }
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_py_quants.gguf");
    write(&dir, "gguf_model", "gguf_py_quants.gguf", &std::fs::read(fixture).unwrap());

    // gguf_tokenizer: the synthetic SentencePiece vocabulary with a chat template, and llama.cpp's
    // vocabularies (cut to 400 tokens) with their test sentences.
    // (The tokenizer needs no tensors: only the metadata is kept.)
    let with_template = metadata_only(&with_metadata(&smallest, |m| m.push(("tokenizer.chat_template".into(), MetaValue::String(SMOLLM_TEMPLATE.into())))));
    write(&dir, "gguf_tokenizer", "synth_spm.bin", &with_text("Hello world, once upon a time\n<s>x</s>", &with_template));
    let vocab = common::cache_dir().join("vocab");
    for name in ["llama-spm", "gpt-2", "llama-bpe", "starcoder", "refact", "mpt"] {
        let Ok(bytes) = std::fs::read(vocab.join(format!("ggml-vocab-{name}.gguf"))) else {
            eprintln!("NOTICE: no {name} vocabulary (scripts/fetch_vocab.sh): seed skipped");
            continue;
        };
        let inp = std::fs::read_to_string(vocab.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap_or_default();
        let text: String = inp.split("\n__ggml_vocab_test__\n").filter(|s| !s.is_empty()).take(8).collect::<Vec<_>>().join("\n");
        let text: String = text.chars().take(200).collect();
        write(&dir, "gguf_tokenizer", &format!("{name}.bin"), &with_text(&text, &truncated_vocab(&bytes, 400)));
    }

    // chat_template: llama.cpp's template collection with a short conversation, and templates
    // that hit each limit.
    let conversation = "\0system:Be brief.\x01Hello, who are you?\x01I am a model.\x01Tell me a joke.";
    if let Ok(entries) = std::fs::read_dir(common::cache_dir().join("templates")) {
        for e in entries {
            let p = e.unwrap().path();
            let t = std::fs::read_to_string(&p).unwrap();
            write(&dir, "chat_template", &p.file_name().unwrap().to_string_lossy(), format!("{t}{conversation}").as_bytes());
        }
    }
    let hostile = [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l == ns.l }}",
        "{{ range(100)|map('indent', 100)|join('x' * 10) }}{{ 'ab'|replace('', 'c')|format(1) }}{{ [1, 2]|batch(3, 0)|list|tojson(indent=2) }}",
        "{% for m in messages %}{{ m.content.split(' ')|reverse|join(' ')|upper }}{{ m['role'][::-1] * 2 }}{% if 'x' in m.content %}{{ loop.index }}{% endif %}{% endfor %}",
    ];
    for (i, t) in hostile.iter().enumerate() {
        write(&dir, "chat_template", &format!("limits_{i}.jinja"), format!("{t}{conversation}").as_bytes());
    }

    // hf_tokenizer: a SentencePiece-style tokenizer.json (written here); the tokenizer.model
    // seeds come from make_checkpoint.py.
    let mut vocab = serde_json::Map::new();
    let mut pieces = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    pieces.extend(["▁", "▁t", "he", "▁the", "▁a", "in", "▁in", "e", "h", "t", "a", "i", "n", "o", "▁w", "or", "ld", "▁wor", "▁world"].map(String::from));
    for (i, p) in pieces.iter().enumerate() {
        vocab.insert(p.clone(), i.into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "special": true},
            {"id": 1, "content": "<s>", "special": true},
            {"id": 2, "content": "</s>", "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null,
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true, "vocab": vocab,
                  "merges": ["▁ t", "h e", "▁t he", "▁ a", "i n", "▁ in", "▁ w", "o r", "l d", "▁w or", "▁wor ld"]}
    });
    let mut seed = (11u16).to_le_bytes().to_vec();
    seed.extend_from_slice(b"hello world");
    seed.push(1); // selects tokenizer.json
    seed.extend_from_slice(serde_json::to_string_pretty(&json).unwrap().as_bytes());
    write(&dir, "hf_tokenizer", "tokenizer_json.bin", &seed);
}
