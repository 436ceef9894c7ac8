//! The synthetic models (src/model/synth.rs) carry a tiny `llama` vocabulary: it must load and
//! tokenise like a SentencePiece vocabulary (dummy prefix, score-ordered merges, byte fallback).

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::{synth_gguf, Arch, SynthSpec};
use mobilellm_web::tokenizer::{StreamDecoder, Tokenizer};

#[test]
fn synthetic_vocabularies_load_and_round_trip() {
    for arch in [Arch::Llama, Arch::MobileLlm] {
        let spec = SynthSpec::tiny(arch);
        let bytes = synth_gguf(&spec).expect("synth");
        let tok = Tokenizer::from_gguf(&GgufFile::parse(&bytes).unwrap()).expect("tokenizer");
        assert_eq!(tok.vocab_size(), spec.n_vocab);
        assert!(tok.add_bos);
        assert_eq!((tok.bos_id, tok.eos_id), (Some(1), Some(2)));
        assert!(tok.is_eog(2) && !tok.is_eog(1));

        let text = "Once upon a time, there lived Zoë in a small village by the river.";
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(ids[0], 1);
        // The tiny vocabulary (n_vocab 300) has only a few merged pieces; where they exist they are
        // used, everything else falls back to bytes (as llama.cpp does with this vocabulary).
        for w in ["▁in", "▁a", "th", "er", "on"] {
            let id = tok.inner.token_to_id(w).unwrap();
            assert!(ids.contains(&id), "{w} missing from {ids:?}");
        }
        // "ë" is not in the vocabulary: byte fallback.
        assert!(ids.contains(&tok.inner.token_to_id("<0xC3>").unwrap()));
        // Not even "▁" is a token here, so most spaces become the bytes of "▁" and decode as "▁"
        // (llama.cpp renders byte tokens verbatim). A text whose spaces all fall in merged pieces
        // ("▁in", "▁a") round-trips, through decode and through the stream decoder.
        let text = "in aZoë.";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.token_text(ids[0]).as_deref(), Some("▁in"));
        assert_eq!(tok.decode(&ids), text);
        let mut d = StreamDecoder::new(&tok);
        let streamed: String = ids.iter().map(|&i| d.push(i)).collect::<String>() + &d.finish();
        assert_eq!(streamed, format!(" {text}"));
        // "</s>" written in the text is the EOS token.
        assert_eq!(tok.encode("the</s>", false).unwrap().last(), Some(&2));
    }
}
