//! Hugging Face checkpoint -> GGUF conversion (MobileLLM and Llama layouts), natively from a
//! directory and in the browser from an in-memory file map.
//!
//! Steps: config.json ([`hf_config`]) -> tensor index from safetensors or a torch.save archive
//! read without executing its pickle ([`checkpoint`], [`zip`], [`pickle`]) -> llama.cpp names,
//! shapes and Q/K permutation ([`layout`]) -> vocabulary ([`vocab`], [`spm`]) -> GGUF written one
//! tensor at a time, so peak memory is a few copies of the largest tensor, not the model.

mod checkpoint;
#[doc(hidden)]
pub mod fuzz;
mod hf_config;
mod layout;
mod mix;
mod pickle;
mod requantize;
mod source;
mod spm;
mod vocab;
mod zip;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use checkpoint::Checkpoint;
use hf_config::HfConfig;
use mix::MixModel;
pub use mix::OutputType;
pub use requantize::{requantize, RequantizeReport};
/// For other hosts of the checkpoint bytes (the browser reads its downloaded files by range
/// through a JS callback: src/wasm_convert.rs).
pub use source::{ByteSource, Files};
use source::{DirFiles, MapFiles};
use vocab::Vocab;

use crate::gguf::{GgufWriter, MetaValue};
use crate::quant::GgmlType;

/// Reported after each tensor is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertProgress {
    /// Tensors done so far (1-based after the first one).
    pub done: usize,
    pub total: usize,
    /// GGUF name of the tensor just written.
    pub name: String,
    /// Bytes of GGUF output so far, header and this tensor included (alignment padding aside).
    pub bytes_written: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// `general.architecture`: "llama", or "mobilellm" when blocks repeat (MobileLLM-LS).
    pub arch: String,
    /// "safetensors" or "pytorch".
    pub source_format: String,
    /// "tokenizer.model" or "tokenizer.json".
    pub tokenizer_source: String,
    pub n_tensors: usize,
    pub n_params: u64,
    pub n_vocab: usize,
    pub n_layers: usize,
    pub block_repeat: usize,
    /// No output.weight: the logits use token_embd.
    pub tied_embeddings: bool,
    /// Matrices kept in F16 because their rows are not a whole number of quantisation blocks.
    pub f16_fallback: Vec<String>,
    /// How many tensors of each type the file holds (vectors included), in GgmlType::ALL order.
    pub tensor_types: Vec<(GgmlType, usize)>,
    pub bytes_written: u64,
}

/// One line for the CLI, e.g. "llama (30 blocks), 272 tensors, 124.6M params, vocab 32000 (from
/// pytorch and tokenizer.model), tied embeddings, 133.3 MB".
impl std::fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.arch)?;
        if self.block_repeat > 1 {
            write!(f, " ({} blocks x{})", self.n_layers, self.block_repeat)?;
        } else {
            write!(f, " ({} blocks)", self.n_layers)?;
        }
        write!(
            f,
            ", {} tensors, {:.1}M params, vocab {} (from {} and {}), {} embeddings, {:.1} MB",
            self.n_tensors,
            self.n_params as f64 / 1e6,
            self.n_vocab,
            self.source_format,
            self.tokenizer_source,
            if self.tied_embeddings { "tied" } else { "separate output" },
            self.bytes_written as f64 / 1e6
        )?;
        if self.tensor_types.iter().filter(|(t, _)| !t.is_float()).count() > 1 {
            let mix: Vec<String> = self.tensor_types.iter().map(|(t, n)| format!("{n} {}", t.name())).collect();
            write!(f, "; tensors: {}", mix.join(", "))?;
        }
        if !self.f16_fallback.is_empty() {
            write!(f, "; {} matrices kept in F16 (rows not a whole number of blocks)", self.f16_fallback.len())?;
        }
        Ok(())
    }
}

/// Converts the Hugging Face checkpoint in `dir` (config.json, weights, tokenizer) to GGUF.
pub fn convert_dir(dir: &Path, out: &mut impl Write, ty: impl Into<OutputType>, progress: &mut dyn FnMut(ConvertProgress)) -> crate::Result<ConvertReport> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
    convert_source(&DirFiles::new(dir), &name, out, ty, progress)
}

/// Converts a checkpoint given as a file map (file name -> bytes), as a browser has it after
/// the user picks the files. Keys may include folders; only the last component is used.
pub fn convert_files(
    files: &BTreeMap<String, Vec<u8>>,
    out: &mut impl Write,
    ty: impl Into<OutputType>,
    progress: &mut dyn FnMut(ConvertProgress),
) -> crate::Result<ConvertReport> {
    convert_source(&MapFiles::new(files), "model", out, ty, progress)
}

/// The output types a conversion may write, by the names the CLI and the browser use (`f32`,
/// `f16`, `q8_0`, `q4_0`, `q4_1`, `q4_k_m`); None for any other name.
pub fn output_type(name: &str) -> Option<OutputType> {
    OutputType::parse(name)
}

/// Checks a config.json alone (supported model type, shapes), so a browser can refuse an
/// unsupported repository before downloading its weights.
pub fn check_config(config_json: &[u8]) -> crate::Result<()> {
    HfConfig::parse(config_json).map(|_| ())
}

fn write_model_metadata(w: &mut GgufWriter, cfg: &HfConfig, arch: &str, name: &str, ty: OutputType) {
    w.add_meta("general.architecture", MetaValue::String(arch.into()));
    w.add_meta("general.name", MetaValue::String(name.into()));
    w.add_meta("general.file_type", MetaValue::U32(ty.file_type()));
    if ty.is_quantised() {
        w.add_meta("general.quantization_version", MetaValue::U32(2));
    }
    let u = |v: usize| MetaValue::U32(v as u32);
    let keys = [
        ("vocab_size", u(cfg.n_vocab)),
        ("context_length", u(cfg.context_length)),
        ("embedding_length", u(cfg.dim)),
        ("block_count", u(cfg.n_layers)),
        ("feed_forward_length", u(cfg.ffn_dim)),
        ("rope.dimension_count", u(cfg.head_dim)),
        ("rope.freq_base", MetaValue::F32(cfg.rope_base)),
        ("attention.head_count", u(cfg.n_heads)),
        ("attention.head_count_kv", u(cfg.n_kv_heads)),
        ("attention.key_length", u(cfg.head_dim)),
        ("attention.value_length", u(cfg.head_dim)),
        ("attention.layer_norm_rms_epsilon", MetaValue::F32(cfg.norm_eps)),
    ];
    for (k, v) in keys {
        w.add_meta(&format!("{arch}.{k}"), v);
    }
    if cfg.block_repeat > 1 {
        w.add_meta(&format!("{arch}.block_repeat"), u(cfg.block_repeat));
    }
}

/// Counts bytes on their way to the real writer, for progress and the report.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    count: &'a Cell<u64>,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Converts a checkpoint from any [`Files`] source; `name` becomes `general.name`.
pub fn convert_source(
    files: &dyn Files,
    name: &str,
    out: &mut impl Write,
    ty: impl Into<OutputType>,
    progress: &mut dyn FnMut(ConvertProgress),
) -> crate::Result<ConvertReport> {
    let ty = ty.into();
    let cfg = HfConfig::parse(&files.open_required("config.json")?.read_all()?)?;
    let ckpt = Checkpoint::open(files)?;
    let names: Vec<String> = ckpt.tensors.keys().cloned().collect();
    let (plan, tied) = layout::plan(&cfg, &|n| ckpt.tensors.get(n).map(|t| t.shape.clone()), &names)?;
    let vocab = Vocab::load(files, &cfg)?;

    // Plain MobileLLM is a llama; only layer sharing needs the `mobilellm` architecture.
    let arch = if cfg.block_repeat > 1 { "mobilellm" } else { "llama" };
    let mut w = GgufWriter::new();
    write_model_metadata(&mut w, &cfg, arch, name, ty);
    vocab.write_metadata(&mut w);
    let mix = MixModel { n_layers: cfg.n_layers, tied };
    let mut f16_fallback = Vec::new();
    for p in &plan {
        let t = ty.tensor_type(&p.gguf_name, &p.shape, mix);
        if t == GgmlType::F16 && p.shape.len() == 2 && ty != OutputType::Uniform(GgmlType::F16) {
            f16_fallback.push(p.gguf_name.clone());
        }
        let dims: Vec<u64> = p.shape.iter().rev().copied().collect();
        w.add_tensor(&p.gguf_name, &dims, t);
    }
    let tensor_types: Vec<(GgmlType, usize)> =
        GgmlType::ALL.into_iter().map(|t| (t, w.tensors.iter().filter(|e| e.2 == t).count())).filter(|&(_, n)| n > 0).collect();

    let count = Cell::new(0u64);
    let mut counting = Counting { inner: out, count: &count };
    let total = plan.len();
    let mut n_params = 0u64;
    w.write(&mut counting, &mut |i| {
        let p = &plan[i];
        let mut x = ckpt.read_f32(files, &p.hf_name)?;
        if let Some(heads) = p.permute_heads {
            x = layout::permute_rows(&x, heads, p.shape[1] as usize);
        }
        n_params += x.len() as u64;
        let bytes = crate::quant::quantize(w.tensors[i].2, &x)?;
        let bytes_written = count.get() + bytes.len() as u64;
        progress(ConvertProgress { done: i + 1, total, name: p.gguf_name.clone(), bytes_written });
        Ok(bytes)
    })?;
    counting.flush()?;
    Ok(ConvertReport {
        arch: arch.into(),
        source_format: ckpt.format.into(),
        tokenizer_source: vocab.source.into(),
        n_tensors: total,
        n_params,
        n_vocab: cfg.n_vocab,
        n_layers: cfg.n_layers,
        block_repeat: cfg.block_repeat,
        tied_embeddings: tied,
        f16_fallback,
        tensor_types,
        bytes_written: count.get(),
    })
}
