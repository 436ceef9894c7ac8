//! Chat templates: SmolLM2's own `tokenizer.chat_template` (read from the real GGUF) rendered
//! with minijinja must give exactly the strings HF / @huggingface/jinja give, and those strings
//! must tokenise to llama.cpp's prompt tokens (tests/data/smollm2_greedy.json).
//! Missing files fail the test unless MOBILELLM_ALLOW_MISSING_MODEL=1.

use std::path::PathBuf;

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::tokenizer::{render_chat, ChatMessage, Tokenizer};

fn smollm2() -> Option<Tokenizer> {
    let dir = match std::env::var_os("MOBILELLM_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mobilellm-web"),
    };
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
    let dir = match std::env::var_os("MOBILELLM_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mobilellm-web"),
    }
    .join("templates");
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
