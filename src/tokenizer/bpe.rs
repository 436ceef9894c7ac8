//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) on the `tokenizers` crate: the pre-tokenizer
//! regexes llama.cpp uses for each `tokenizer.ggml.pre`, applied one after another (each splits
//! the pieces of the previous one, matches and the gaps between them both kept), then GPT-2's
//! byte-to-unicode mapping, then BPE with `tokenizer.ggml.merges` ranks.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::vocab::Vocab;

/// GPT-2's word regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's regex, with llama.cpp's case-insensitive contractions spelled out.
const LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2: as Llama 3 but single digits.
const QWEN2: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer settings for a `tokenizer.ggml.pre` value (None: not supported).
pub(super) struct PreTokenizer {
    pub regexes: &'static [&'static str],
    /// The whole pre-token is looked up before applying merges (llama.cpp's ignore_merges).
    pub ignore_merges: bool,
    /// llama.cpp's add_bos default for this pre-tokenizer (the GGUF key overrides it).
    pub add_bos: bool,
}

pub(super) fn pre_tokenizer(pre: &str) -> Option<PreTokenizer> {
    let p = |regexes, ignore_merges, add_bos| Some(PreTokenizer { regexes, ignore_merges, add_bos });
    match pre {
        "default" => p(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], false, false),
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" => p(&[GPT2], false, false),
        // Digits one by one, then GPT-2's regex.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" | "mellum2" => p(&[r"\p{N}", GPT2], false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => p(&[LLAMA3], true, true),
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" | "hunyuan" => p(&[QWEN2], false, false),
        _ => None,
    }
}

/// GPT-2's reversible byte-to-unicode table: printable bytes map to themselves, the others to
/// U+0100 upwards in byte order. (The `tokenizers` ByteLevel step applies it when encoding.)
#[cfg(test)]
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        *slot = if printable {
            char::from(b as u8)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    table
}

/// Inverse of [`byte_to_char`] for decoding token texts.
pub(super) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    match u {
        33..=126 | 161..=172 | 174..=255 => Some(u as u8),
        256..=323 => {
            // The unprintable bytes in order: 0..=32, 127..=160, 173.
            let k = u - 256;
            Some(match k {
                0..=32 => k as u8,
                33..=66 => (k - 33 + 127) as u8,
                67 => 173,
                _ => unreachable!(),
            })
        }
        _ => None,
    }
}

/// The `tokenizers` pipeline for a byte-level vocabulary.
pub(super) fn build(vocab: &Vocab, merges: &[&str], pre: &PreTokenizer) -> crate::Result<tokenizers::Tokenizer> {
    let terr = |e: tokenizers::Error| crate::Error::Tokenizer(e.to_string());
    let bpe_vocab: BpeVocab = vocab.texts.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut pairs: Merges = Vec::with_capacity(merges.len());
    let mut joined = String::new();
    let mut seen = std::collections::HashSet::with_capacity(merges.len());
    for m in merges {
        // llama.cpp splits at the first space after the first character.
        let Some(pos) = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(i, _)| i) else {
            return Err(crate::Error::Tokenizer(format!("malformed merge {m:?}")));
        };
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        // A merge whose parts or result are not tokens can never produce a token; `tokenizers`
        // rejects such merges, so they are left out (keeping the ranks of the others in order).
        joined.clear();
        joined.push_str(a);
        joined.push_str(b);
        // A repeated pair keeps its first (best) rank, as in llama.cpp; `tokenizers` would keep
        // the last one.
        if vocab.get(a).is_some() && vocab.get(b).is_some() && vocab.get(&joined).is_some() && seen.insert((a, b)) {
            pairs.push((a.to_string(), b.to_string()));
        }
    }
    let model = BPE::builder().vocab_and_merges(bpe_vocab, pairs).ignore_merges(pre.ignore_merges).build().map_err(terr)?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in pre.regexes {
        steps.push(Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(terr)?.into());
    }
    // The regexes did the splitting; ByteLevel only maps bytes to GPT-2's characters.
    steps.push(ByteLevel::new(false, false, false).into());
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Sequence::new(steps)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_round_trips() {
        let t = byte_to_char();
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b), "byte {b}");
        }
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(char_to_byte('€'), None);
    }
}
