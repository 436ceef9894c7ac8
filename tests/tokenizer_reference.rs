//! Tokenisation against llama.cpp's own reference outputs:
//! - llama.cpp's test vocabularies (scripts/fetch_vocab.sh): every `.inp`/`.out` pair, read the
//!   way llama.cpp's tests/test-tokenizer-0.cpp reads them (inputs separated by
//!   "\n__ggml_vocab_test__\n", one line of ids per input, add_special = false, so no BOS; it
//!   passes parse_special = false, which equals true here: no input contains special-token text);
//! - the real SmolLM2 GGUF against tests/data/smollm2_tokenize.json (llama.cpp's tokens, no BOS);
//! - pseudo-random texts on four vocabularies (tests/data/tokenizer_fuzz.json).
//!
//! Missing references fail the test unless MOBILELLM_ALLOW_MISSING_MODEL=1.

mod common;

use std::path::PathBuf;

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::tokenizer::Tokenizer;

/// The file's bytes, or None (with a notice) when it is missing and that is allowed.
fn require(path: &std::path::Path, how: &str) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") {
                eprintln!("NOTICE: skipping, {} is missing ({e}); {how}", path.display());
                None
            } else {
                panic!("{} is missing ({e}); {how} (or set MOBILELLM_ALLOW_MISSING_MODEL=1 to skip)", path.display());
            }
        }
    }
}

fn load(bytes: &[u8]) -> Tokenizer {
    let file = GgufFile::parse(bytes).expect("parse GGUF");
    Tokenizer::from_gguf(&file).expect("Tokenizer::from_gguf")
}

/// Shows ids with their texts, for mismatch reports.
fn show(tok: &Tokenizer, ids: &[u32]) -> String {
    ids.iter().map(|&i| format!("{i}:{:?}", tok.token_text(i).unwrap_or_default())).collect::<Vec<_>>().join(" ")
}

/// Compares every case, reports the first mismatch in detail and the number of failures.
fn check_cases(name: &str, tok: &Tokenizer, cases: &[(String, Vec<u32>)]) {
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = tok.encode(text, false).expect("encode");
        if &got != want {
            failures.push((text, got, want));
        }
    }
    if let Some((text, got, want)) = failures.first() {
        let at = got.iter().zip(want.iter()).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "{name}: {} of {} texts differ from llama.cpp. First: {text:?}\n first difference at token {at}\n got:  {}\n want: {}",
            failures.len(),
            cases.len(),
            show(tok, got),
            show(tok, want)
        );
    }
    eprintln!("{name}: {} texts tokenised exactly as llama.cpp", cases.len());
}

/// One llama.cpp test vocabulary: every pair of its .inp/.out files.
fn llama_cpp_vocab(name: &str) {
    let dir = common::cache_dir().join("vocab");
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let how = "run scripts/fetch_vocab.sh";
    let Some(bytes) = require(&base, how) else { return };
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect(".inp next to the vocab");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect(".out next to the vocab");
    // As test-tokenizer-0.cpp: split on the separator; a trailing separator ends the list.
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(k) => {
                inputs.push(inp[pos..pos + k].to_string());
                pos += k + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().expect("token id")).collect()).collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: inputs vs outputs");
    assert!(inputs.len() > 20, "{name}: only {} cases", inputs.len());
    let tok = load(&bytes);
    let cases: Vec<(String, Vec<u32>)> = inputs.into_iter().zip(outputs).collect();
    check_cases(name, &tok, &cases);
}

#[test]
fn llama_spm_matches_llama_cpp() {
    llama_cpp_vocab("llama-spm");
}

#[test]
fn gpt2_matches_llama_cpp() {
    llama_cpp_vocab("gpt-2");
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    llama_cpp_vocab("llama-bpe");
}

/// starcoder and refact use the same pre-tokenizer regexes as SmolLM2's `smollm`.
#[test]
fn starcoder_matches_llama_cpp() {
    llama_cpp_vocab("starcoder");
}

#[test]
fn refact_matches_llama_cpp() {
    llama_cpp_vocab("refact");
}

#[test]
fn mpt_matches_llama_cpp() {
    llama_cpp_vocab("mpt");
}

fn smollm2() -> Option<Tokenizer> {
    let path = common::cache_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    require(&path, "run scripts/fetch_model.sh").map(|b| load(&b))
}

#[test]
fn smollm2_matches_llama_cpp() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_tokenize.json");
    let Some(json) = require(&data, "it is written from llama.cpp by the reference-data script") else { return };
    let Some(tok) = smollm2() else { return };
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let cases: Vec<(String, Vec<u32>)> = v["texts"]
        .as_array()
        .expect("texts array")
        .iter()
        .map(|c| {
            let text = c["text"].as_str().expect("text").to_string();
            let ids = c["tokens"].as_array().expect("tokens").iter().map(|t| t.as_u64().expect("id") as u32).collect();
            (text, ids)
        })
        .collect();
    assert!(!cases.is_empty());
    check_cases("SmolLM2", &tok, &cases);
}

/// Facts about SmolLM2's vocabulary that the engine relies on.
#[test]
fn smollm2_special_tokens() {
    let Some(tok) = smollm2() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert!(!tok.add_bos, "SmolLM2 does not add BOS");
    let im_start = tok.inner.token_to_id("<|im_start|>").expect("<|im_start|>");
    let im_end = tok.inner.token_to_id("<|im_end|>").expect("<|im_end|>");
    assert!(tok.is_eog(im_end), "<|im_end|> ends generation: eog = {:?}", tok.eog_ids);
    // llama.cpp also stops at "<|endoftext|>" (found by its text); BOS does not end generation.
    assert!(tok.is_eog(tok.inner.token_to_id("<|endoftext|>").unwrap()));
    assert!(!tok.is_eog(tok.bos_id.unwrap()));
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>\n", false).unwrap();
    assert_eq!(ids.first(), Some(&im_start), "{}", show(&tok, &ids));
    assert!(ids.contains(&im_end));
    assert_eq!(tok.decode(&ids), "<|im_start|>user\nHi<|im_end|>\n");
    assert!(tok.chat_template.as_deref().unwrap_or("").contains("im_start"));
}

/// tests/data/tokenizer_fuzz.json (tools/reference/gen_tokenizer_fuzz.mjs): 400 pseudo-random
/// texts mixing scripts, unusual whitespace, marks, emoji, digits and special tokens, tokenised by
/// llama.cpp with four vocabularies.
#[test]
fn fuzz_texts_match_llama_cpp() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer_fuzz.json");
    let Some(json) = require(&data, "generate it with tools/reference/gen_tokenizer_fuzz.mjs") else { return };
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let texts: Vec<String> = v["texts"].as_array().expect("texts").iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let vocabs = v["vocabs"].as_object().expect("vocabs");
    assert_eq!(vocabs.len(), 4);
    for (name, entry) in vocabs {
        let file = entry["file"].as_str().unwrap();
        let path = if name == "smollm2" { common::cache_dir().join(file) } else { common::cache_dir().join("vocab").join(file) };
        let Some(bytes) = require(&path, "run scripts/fetch_model.sh and scripts/fetch_vocab.sh") else { continue };
        let tok = load(&bytes);
        let ids = entry["tokens"].as_array().expect("tokens");
        assert_eq!(ids.len(), texts.len());
        let cases: Vec<(String, Vec<u32>)> =
            texts.iter().zip(ids).map(|(t, ids)| (t.clone(), ids.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect())).collect();
        check_cases(&format!("fuzz/{name}"), &tok, &cases);
    }
}
