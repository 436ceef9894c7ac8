#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilellm_web_fuzz::gguf_tokenizer(data));
