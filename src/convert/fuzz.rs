//! Entry points for the fuzz targets (`fuzz/`) and their regression tests
//! (`tests/fuzz_regressions.rs`): the converter's readers one at a time, on bytes in memory.
//! Not an API: nothing else should call these.

use std::collections::BTreeMap;

use super::checkpoint::Checkpoint;
use super::hf_config::HfConfig;
use super::source::MapFiles;
use super::vocab::Vocab;
use super::{pickle, spm, zip};
use crate::gguf::GgufWriter;
use crate::Result;

/// Opens a checkpoint (model.safetensors / pytorch_model.bin and their sharded indexes) and
/// reads every tensor of at most `max_elements` elements. Returns the number of values read.
pub fn checkpoint(files: &BTreeMap<String, Vec<u8>>, max_elements: u64) -> Result<usize> {
    let files = MapFiles::new(files);
    let ckpt = Checkpoint::open(&files)?;
    let mut n = 0;
    for (name, t) in &ckpt.tensors {
        if t.numel() <= max_elements {
            n += ckpt.read_f32(&files, name)?.len();
        }
    }
    Ok(n)
}

/// The entries of a zip archive (torch.save's container).
pub fn zip_entries(bytes: &[u8]) -> Result<usize> {
    Ok(zip::read_entries(&bytes)?.len())
}

/// The tensors a torch.save pickle (data.pkl) describes.
pub fn pickle_state_dict(bytes: &[u8]) -> Result<usize> {
    Ok(pickle::read_state_dict(bytes)?.len())
}

/// A SentencePiece model (tokenizer.model).
pub fn tokenizer_model(bytes: &[u8]) -> Result<usize> {
    Ok(spm::parse(bytes)?.pieces.len())
}

/// The vocabulary of `files` (tokenizer.model or tokenizer.json, tokenizer_config.json,
/// added_tokens.json) for a model with `config_json`, written as the metadata of a GGUF without
/// tensors (which `Tokenizer::from_gguf` can read back).
pub fn vocab_gguf(files: &BTreeMap<String, Vec<u8>>, config_json: &[u8]) -> Result<Vec<u8>> {
    let cfg = HfConfig::parse(config_json)?;
    let vocab = Vocab::load(&MapFiles::new(files), &cfg)?;
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", crate::gguf::MetaValue::String("llama".into()));
    vocab.write_metadata(&mut w);
    let mut out = Vec::new();
    w.write(&mut out, &mut |_| Ok(Vec::new()))?;
    Ok(out)
}
