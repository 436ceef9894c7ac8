//! What each fuzz target does with its input, shared with the regression tests
//! (tests/fuzz_regressions.rs includes this file), so a crash input replays exactly.
//!
//! Every function must return normally for any input: a panic, a hang (libFuzzer -timeout) or a
//! huge allocation (-rss_limit_mb / -malloc_limit_mb) is a finding. Errors are fine.

use std::collections::BTreeMap;

use mobilellm_web::convert::fuzz as convert;
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::{ModelConfig, ModelTensors};
use mobilellm_web::quant;
use mobilellm_web::tokenizer::{render_chat, ChatMessage, StreamDecoder, Tokenizer};

/// Tensors larger than this are not dequantised (the reader's checks are what is under test,
/// not the speed of dequantising a big matrix).
const MAX_DEQUANT: usize = 1 << 18;

/// Splits `data` into a short length-prefixed head (2 bytes little-endian, at most `max`) and the
/// rest.
fn split_head(data: &[u8], max: usize) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (&[], data);
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize % (max + 1)).min(data.len() - 2);
    data[2..].split_at(n)
}

/// A GGUF file: the reader, the model config, the tensor views, and the dequantisation of each
/// view (what `LoadedModel::load` does before the GPU).
pub fn gguf_model(data: &[u8]) {
    let Ok(file) = GgufFile::parse(data) else { return };
    for t in &file.tensors {
        // The reader promised every tensor lies inside the file.
        assert!(file.try_tensor_data(data, t).is_some(), "tensor {} outside the file", t.name);
    }
    let Ok(cfg) = ModelConfig::from_gguf(&file) else { return };
    let Ok(tensors) = ModelTensors::from_gguf(&file, data, &cfg) else { return };
    let mut views = vec![&tensors.token_embd, &tensors.output_norm];
    views.extend(tensors.output.as_ref());
    for l in &tensors.layers {
        views.extend([&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down]);
    }
    for v in views {
        let Some(n) = v.rows.checked_mul(v.cols) else { panic!("{}: {} x {} overflows", v.name, v.rows, v.cols) };
        if n <= MAX_DEQUANT {
            let x = quant::dequantize(v.ty, v.data, n).unwrap_or_else(|e| panic!("{}: a checked view does not dequantise: {e}", v.name));
            assert_eq!(x.len(), n);
        }
    }
}

/// A GGUF's tokenizer (the first bytes of the input are text to encode): encode, decode,
/// streaming decode, and the file's chat template.
pub fn gguf_tokenizer(data: &[u8]) {
    let (text, gguf) = split_head(data, 512);
    let text = String::from_utf8_lossy(text);
    let Ok(file) = GgufFile::parse(gguf) else { return };
    let Ok(tok) = Tokenizer::from_gguf(&file) else { return };
    for add_bos in [false, true] {
        let Ok(ids) = tok.encode(&text, add_bos) else { continue };
        let whole = tok.decode(&ids);
        let mut stream = StreamDecoder::new(&tok);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.push(id));
        }
        streamed.push_str(&stream.finish());
        assert!(streamed.len() <= whole.len() + 3 * ids.len() + 3, "streamed {streamed:?} vs {whole:?}");
    }
    // Any ids, in range or not.
    let ids: Vec<u32> = text.as_bytes().chunks(2).map(|c| u32::from(c[0]) * 251 + u32::from(*c.get(1).unwrap_or(&0)) * 7).collect();
    let _ = tok.decode(&ids);
    let _ = tok.decode(&[u32::MAX, tok.vocab_size() as u32]);
    if let Some(t) = tok.chat_template.as_deref() {
        chat(t, &[ChatMessage { role: "user".into(), content: text.to_string() }]);
    }
}

/// Renders a chat template: it may fail, but only with a ChatTemplateError.
fn chat(template: &str, messages: &[ChatMessage]) {
    if let Err(e) = render_chat(Some(template), messages, true, "<s>", "</s>") {
        assert_eq!(e.code(), "ChatTemplateError", "{e}");
    }
}

/// A chat template and a conversation: the template text, then after a NUL byte the messages
/// separated by \x01 (roles alternate user / assistant; a first message starting with "system:"
/// is the system message).
pub fn chat_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (template, rest) = text.split_once('\0').unwrap_or((&text, ""));
    let mut messages = Vec::new();
    for (i, part) in rest.split('\x01').filter(|p| !p.is_empty()).enumerate() {
        let (role, content) = match part.strip_prefix("system:") {
            Some(c) if i == 0 => ("system", c),
            _ => (if messages.len() % 2 == 0 { "user" } else { "assistant" }, part),
        };
        messages.push(ChatMessage { role: role.into(), content: content.into() });
    }
    if messages.is_empty() {
        messages.push(ChatMessage { role: "user".into(), content: "Hello!".into() });
    }
    chat(template, &messages);
}

/// The file a one-byte selector picks: the fuzzer learns to steer between formats.
fn pick<'a>(data: &'a [u8], names: &[&'static str]) -> Option<(&'static str, &'a [u8])> {
    let (&sel, rest) = data.split_first()?;
    Some((names[sel as usize % names.len()], rest))
}

/// A Hugging Face checkpoint's weights: safetensors header and data, or a torch.save zip with
/// its pickle, opened and every small tensor read (widened to f32 through its strides).
pub fn checkpoint(data: &[u8]) {
    let Some((name, bytes)) = pick(data, &["model.safetensors", "pytorch_model.bin"]) else { return };
    let files = BTreeMap::from([(name.to_string(), bytes.to_vec())]);
    let _ = convert::checkpoint(&files, MAX_DEQUANT as u64);
    if name == "pytorch_model.bin" {
        let _ = convert::zip_entries(bytes);
    }
}

/// A torch.save pickle (data.pkl) alone.
pub fn pickle(data: &[u8]) {
    let _ = convert::pickle_state_dict(data);
}

/// config.json for the tokenizer targets: a small llama whose vocabulary may hold up to 4096
/// tokens.
const CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
"num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 4096, "max_position_embeddings": 256,
"bos_token_id": 1, "eos_token_id": 2}"#;

/// A Hugging Face tokenizer (tokenizer.model, SentencePiece protobuf, or tokenizer.json; the first
/// bytes are text to encode), converted to GGUF metadata, then read back by the GGUF tokenizer and
/// used.
pub fn hf_tokenizer(data: &[u8]) {
    let (text, rest) = split_head(data, 256);
    let Some((name, bytes)) = pick(rest, &["tokenizer.model", "tokenizer.json"]) else { return };
    if name == "tokenizer.model" {
        let _ = convert::tokenizer_model(bytes);
    }
    let files = BTreeMap::from([(name.to_string(), bytes.to_vec())]);
    let Ok(gguf) = convert::vocab_gguf(&files, CONFIG.as_bytes()) else { return };
    let file = GgufFile::parse(&gguf).expect("the converter writes a GGUF the reader reads");
    let Ok(tok) = Tokenizer::from_gguf(&file) else { return };
    if let Ok(ids) = tok.encode(&String::from_utf8_lossy(text), true) {
        let _ = tok.decode(&ids);
    }
}
