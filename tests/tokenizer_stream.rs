//! Detokenisation: `decode`, `token_bytes` and `StreamDecoder` against llama.cpp's detokenised
//! outputs (tests/data/smollm2_greedy.json, byte-level vocabulary), and byte-fallback streaming on
//! llama.cpp's SentencePiece test vocabulary (scripts/fetch_vocab.sh).
//! Missing files fail the test unless MOBILELLM_ALLOW_MISSING_MODEL=1.

use std::path::{Path, PathBuf};

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::tokenizer::{StreamDecoder, Tokenizer};

fn cache_dir() -> PathBuf {
    match std::env::var_os("MOBILELLM_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mobilellm-web"),
    }
}

fn load(path: &Path, how: &str) -> Option<Tokenizer> {
    match std::fs::read(path) {
        Ok(bytes) => Some(Tokenizer::from_gguf(&GgufFile::parse(&bytes).expect("parse")).expect("tokenizer")),
        Err(e) if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") => {
            eprintln!("NOTICE: skipping, {} is missing ({e}); {how}", path.display());
            None
        }
        Err(e) => panic!("{} is missing ({e}); {how} (or MOBILELLM_ALLOW_MISSING_MODEL=1)", path.display()),
    }
}

/// Streams `ids`; checks that every chunk is whole text and returns the concatenation.
fn stream(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new(tok);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&d.push(id));
    }
    out.push_str(&d.finish());
    out
}

#[test]
fn smollm2_decode_and_stream_match_llama_cpp() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_greedy.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).expect("tests/data/smollm2_greedy.json")).expect("JSON");
    let Some(tok) = load(&cache_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"), "run scripts/fetch_model.sh") else { return };
    let mut partial_chars = 0;
    for p in json["prompts"].as_array().expect("prompts") {
        let ids: Vec<u32> = p["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        let want = p["output_text"].as_str().unwrap();
        assert_eq!(tok.decode(&ids), want, "decode of {}", p["name"]);
        assert_eq!(stream(&tok, &ids), want, "stream of {}", p["name"]);
        // Round trip: the prompt's tokens decode to the prompt text.
        let prompt: Vec<u32> = p["prompt_tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.decode(&prompt), p["text"].as_str().unwrap(), "prompt of {}", p["name"]);
        // Count tokens that end inside a character: the streaming path must have buffered them.
        partial_chars += ids.iter().filter(|&&i| std::str::from_utf8(&tok.token_bytes(i)).is_err()).count();
    }
    assert!(partial_chars > 0, "the data should exercise tokens that split UTF-8 characters");
}

#[test]
fn stream_holds_back_incomplete_characters() {
    let Some(tok) = load(&cache_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"), "run scripts/fetch_model.sh") else { return };
    let text = "北京 🌍🔥 café";
    let ids = tok.encode(text, false).unwrap();
    let mut d = StreamDecoder::new(&tok);
    let mut out = String::new();
    for &id in &ids {
        let chunk = d.push(id);
        assert!(!chunk.contains('\u{FFFD}'), "chunk {chunk:?} has a replacement character");
        out.push_str(&chunk);
        assert!(text.starts_with(&out), "{out:?} is not a prefix of {text:?}");
    }
    assert_eq!(d.finish(), "");
    assert_eq!(out, text);
    // An incomplete character at the end is flushed as U+FFFD by finish().
    let euro = tok.encode("€", false).unwrap();
    let first_byte = tok.inner.token_to_id("â").expect("byte-level token for 0xE2");
    assert_ne!(euro, vec![first_byte]);
    let mut d = StreamDecoder::new(&tok);
    assert_eq!(d.push(first_byte), "");
    assert_eq!(d.finish(), "\u{FFFD}");
}

#[test]
fn spm_byte_fallback_streams_whole_characters() {
    let Some(tok) = load(&cache_dir().join("vocab/ggml-vocab-llama-spm.gguf"), "run scripts/fetch_vocab.sh") else { return };
    assert!(tok.add_bos && tok.bos_id == Some(1) && tok.eos_id == Some(2));
    let text = "Hello 🦙 world ☃";
    let ids = tok.encode(text, true).unwrap();
    assert_eq!(ids[0], 1, "BOS first");
    // The llama emoji and the snowman are not in the vocabulary: their UTF-8 bytes as <0xNN> tokens.
    let bytes: Vec<String> = ids.iter().filter_map(|&i| tok.token_text(i)).filter(|t| t.starts_with("<0x")).collect();
    assert_eq!(bytes, ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>", "<0xE2>", "<0x98>", "<0x83>"], "ids {ids:?}");
    // As llama.cpp's detokenizer: BOS renders as "<s>", and the dummy-prefix space stays after it.
    assert_eq!(tok.decode(&ids), format!("<s> {text}"));
    assert_eq!(tok.decode(&ids[1..]), text);
    let mut d = StreamDecoder::new(&tok);
    let chunks: Vec<String> = ids[1..].iter().map(|&i| d.push(i)).collect();
    assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
    assert!(chunks.contains(&"🦙".to_string()), "the emoji comes out whole with its last byte: {chunks:?}");
    assert_eq!(chunks.concat(), format!(" {text}"));
    assert_eq!(tok.token_bytes(tok.inner.token_to_id("<0x0A>").unwrap()), b"\n");
    // Special tokens written in the text are parsed, and the dummy prefix follows them.
    let ids = tok.encode("<s>Hi</s>", false).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tok.token_text(ids[1]).as_deref(), Some("▁Hi"));
    assert!(tok.is_eog(2));
}
