//! The converter's vocabulary against llama.cpp's reference tokenisations. We rebuild a
//! SentencePiece tokenizer.model (protobuf) and a Llama-style tokenizer.json from llama.cpp's
//! ggml-vocab-llama-spm.gguf (scripts/fetch_vocab.sh), convert a tiny checkpoint carrying each,
//! and check that the crate's Tokenizer on the converted GGUF reproduces every .inp/.out pair.
//! Missing vocabularies fail the test unless MOBILELLM_ALLOW_MISSING_MODEL=1.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mobilellm_web::convert::convert_dir;
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::quant::GgmlType;
use mobilellm_web::tokenizer::Tokenizer;

struct SpmVocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i64>,
    cases: Vec<(String, Vec<u32>)>,
}

/// llama.cpp's Llama-2 vocabulary and its reference cases, or None when missing and allowed.
fn llama_spm_vocab() -> Option<SpmVocab> {
    let cache = common::cache_dir();
    let base = cache.join("vocab/ggml-vocab-llama-spm.gguf");
    let bytes = match std::fs::read(&base) {
        Ok(b) => b,
        Err(e) if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") => {
            eprintln!("NOTICE: skipping, {} is missing ({e}); run scripts/fetch_vocab.sh", base.display());
            return None;
        }
        Err(e) => panic!("{} is missing ({e}); run scripts/fetch_vocab.sh (or set MOBILELLM_ALLOW_MISSING_MODEL=1)", base.display()),
    };
    let file = GgufFile::parse(&bytes).unwrap();
    let tokens: Vec<String> = file.get_str_array("tokenizer.ggml.tokens").unwrap().into_iter().map(String::from).collect();
    let scores = file.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = file.get_i64_array("tokenizer.ggml.token_type").unwrap();
    // test-tokenizer-0's format: inputs separated by "\n__ggml_vocab_test__\n", one line of ids each.
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs: Vec<String> = inp.split(sep).map(String::from).collect();
    if inputs.last().is_some_and(|s| s.is_empty()) {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), outputs.len());
    assert!(inputs.len() > 20);
    Some(SpmVocab { tokens, scores, types, cases: inputs.into_iter().zip(outputs).collect() })
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint(num << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// A SentencePiece ModelProto with the vocabulary's pieces and Llama's special ids.
fn model_proto(v: &SpmVocab) -> Vec<u8> {
    let mut out = Vec::new();
    for ((t, s), ty) in v.tokens.iter().zip(&v.scores).zip(&v.types) {
        let mut p = Vec::new();
        field(1, t.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&s.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(*ty as u64, &mut p);
        field(1, &p, &mut out);
    }
    let mut trainer = Vec::new();
    for (num, id) in [(40u64, 0i64), (41, 1), (42, 2), (43, -1)] {
        varint(num << 3, &mut trainer);
        varint(id as u64, &mut trainer);
    }
    field(2, &trainer, &mut out);
    out
}

/// A Llama fast-tokenizer JSON: merges derived from the pieces as transformers' LlamaConverter
/// does (every split of a piece into two pieces, ordered by the merged piece's score).
fn tokenizer_json(v: &SpmVocab) -> serde_json::Value {
    let index: HashMap<&str, usize> = v.tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, String)> = Vec::new();
    for (i, t) in v.tokens.iter().enumerate() {
        if v.types[i] != 1 {
            continue;
        }
        for (k, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(k);
            if let (Some(&ia), Some(&ib)) = (index.get(a), index.get(b)) {
                merges.push((v.scores[i], ia.max(ib), format!("{a} {b}")));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let vocab: serde_json::Map<String, serde_json::Value> = v.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i.into())).collect();
    let added: Vec<serde_json::Value> = (0..3).map(|i| serde_json::json!({"id": i, "content": v.tokens[i], "special": true})).collect();
    serde_json::json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}
        ]},
        "pre_tokenizer": null,
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
                  "vocab": vocab, "merges": merges.into_iter().map(|m| m.2).collect::<Vec<_>>()}
    })
}

/// A one-block random model with a 32000-token embedding, from the fixture script.
fn tiny_checkpoint(name: &str, tokenizer_model: Option<&Path>) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("convert").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_checkpoint.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(&dir);
    cmd.args(["--vocab", "32000", "--dim", "32", "--heads", "2", "--kv-heads", "1", "--ffn", "32", "--layers", "1", "--no-reference"]);
    if let Some(p) = tokenizer_model {
        cmd.arg("--tokenizer-model").arg(p);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(out.status.success(), "fixture failed (needs numpy): {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn check_cases(what: &str, tok: &Tokenizer, cases: &[(String, Vec<u32>)]) {
    let bad: Vec<_> = cases.iter().filter(|(text, want)| &tok.encode(text, false).unwrap() != want).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} cases differ, first {:?}: got {:?} want {:?}",
        bad.len(),
        cases.len(),
        bad[0].0,
        tok.encode(&bad[0].0, false).unwrap(),
        bad[0].1
    );
}

#[test]
fn tokenizer_model_converts_to_llama_cpp_vocabulary() {
    let Some(v) = llama_spm_vocab() else { return };
    let proto = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama-spm.tokenizer.model");
    std::fs::write(&proto, model_proto(&v)).unwrap();
    let dir = tiny_checkpoint("tok_spm", Some(&proto));
    let mut gguf = Vec::new();
    let report = convert_dir(&dir, &mut gguf, GgmlType::F16, &mut |_| {}).unwrap();
    assert_eq!(report.tokenizer_source, "tokenizer.model");
    let file = GgufFile::parse(&gguf).unwrap();
    assert_eq!(file.get_str("tokenizer.ggml.model"), Some("llama"));
    assert_eq!(file.get_str_array("tokenizer.ggml.tokens").unwrap(), v.tokens.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(file.get_f32_array("tokenizer.ggml.scores").unwrap(), v.scores);
    assert_eq!(file.get_i64_array("tokenizer.ggml.token_type").unwrap(), v.types);
    assert_eq!(file.get_u64("tokenizer.ggml.bos_token_id"), Some(1));
    assert_eq!(file.get_u64("tokenizer.ggml.eos_token_id"), Some(2));
    assert_eq!(file.get_u64("tokenizer.ggml.unknown_token_id"), Some(0));
    assert_eq!(file.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
    let tok = Tokenizer::from_gguf(&file).unwrap();
    check_cases("tokenizer.model", &tok, &v.cases);
    assert_eq!(tok.encode("Hello world", true).unwrap(), vec![1, 15043, 3186]);
}

#[test]
fn tokenizer_json_converts_to_equivalent_vocabulary() {
    let Some(v) = llama_spm_vocab() else { return };
    let dir = tiny_checkpoint("tok_json", None);
    std::fs::remove_file(dir.join("tokenizer.model")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tokenizer_json(&v)).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), br#"{"add_bos_token": true, "add_eos_token": false, "chat_template": "{{ messages }}"}"#).unwrap();
    let mut gguf = Vec::new();
    let report = convert_dir(&dir, &mut gguf, GgmlType::F16, &mut |_| {}).unwrap();
    assert_eq!(report.tokenizer_source, "tokenizer.json");
    let file = GgufFile::parse(&gguf).unwrap();
    assert_eq!(file.get_str_array("tokenizer.ggml.tokens").unwrap(), v.tokens.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(file.get_i64_array("tokenizer.ggml.token_type").unwrap(), v.types);
    assert_eq!(file.get_str("tokenizer.chat_template"), Some("{{ messages }}"));
    let tok = Tokenizer::from_gguf(&file).unwrap();
    check_cases("tokenizer.json", &tok, &v.cases);
}
