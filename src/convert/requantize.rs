//! GGUF → GGUF requantisation (`mobilellm quantize`): every matrix re-encoded in the type a plan
//! picks for it (a uniform type, or a mix such as Q4_K_M), metadata and norms kept, one tensor
//! at a time. Each matrix goes through its type's dequantiser first, so requantising an already
//! quantised file (SmolLM2's Q4_1) compounds both roundings: meant for benchmarks and for
//! trying a mix on a model whose original weights are not at hand, not as a substitute for
//! converting the checkpoint.

use std::io::Write;

use super::{MixModel, OutputType};
use crate::gguf::{GgufFile, GgufWriter, MetaValue};
use crate::model::ModelConfig;
use crate::quant::{dequantize, quantize, GgmlType};
use crate::Error;

/// What [`requantize`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RequantizeReport {
    /// Tensors re-encoded, and tensors copied as they were (norms, and matrices already in the
    /// planned type).
    pub requantized: usize,
    pub copied: usize,
    /// Output tensors per type, by type name (sorted).
    pub types: Vec<(String, usize)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::fmt::Display for RequantizeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<String> = self.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        write!(
            f,
            "{} tensors requantised, {} copied ({}); {:.1} MB -> {:.1} MB",
            self.requantized,
            self.copied,
            types.join(", "),
            self.bytes_in as f64 / 1e6,
            self.bytes_out as f64 / 1e6
        )
    }
}

/// Writes `bytes` (a GGUF model file) to `out` with each matrix in the type `ty` picks for it
/// (the converter's rules: a uniform type, F16 where rows are not whole blocks, or the Q4_K_M
/// mix); norms keep their type. `general.file_type` becomes `ty`'s.
pub fn requantize<W: Write>(bytes: &[u8], out: &mut W, ty: OutputType, progress: &mut dyn FnMut(usize, usize, &str)) -> crate::Result<RequantizeReport> {
    let file = GgufFile::parse(bytes)?;
    let cfg = ModelConfig::from_gguf(&file)?;
    let mix = MixModel { n_layers: cfg.n_layers, tied: file.tensor("output.weight").is_none() };
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in &file.metadata {
        if k != "general.file_type" && k != "general.quantization_version" {
            w.add_meta(k, v.clone());
        }
    }
    w.add_meta("general.file_type", MetaValue::U32(ty.file_type()));
    if ty.is_quantised() {
        w.add_meta("general.quantization_version", MetaValue::U32(2));
    }

    // The rules take PyTorch's [rows, cols]; GGUF lists dims fastest first.
    let targets: Vec<GgmlType> =
        file.tensors.iter().map(|t| if t.dims.len() == 2 { ty.tensor_type(&t.name, &[t.dims[1], t.dims[0]], mix) } else { t.ty }).collect();
    for (t, &ty) in file.tensors.iter().zip(&targets) {
        if t.dims[0] % ty.block_len() as u64 != 0 {
            return Err(Error::InvalidArgument(format!("{}: rows of {} are not whole {} blocks", t.name, t.dims[0], ty.name())));
        }
        w.add_tensor(&t.name, &t.dims, ty);
    }
    let (mut requantized, mut copied) = (0, 0);
    let total = file.tensors.len();
    let mut counted = CountingWriter { inner: out, bytes: 0 };
    w.write(&mut counted, &mut |i| {
        let t = &file.tensors[i];
        let data = file.try_tensor_data(bytes, t).ok_or_else(|| Error::InvalidArgument(format!("tensor {} lies outside the file", t.name)))?;
        let result = if targets[i] == t.ty {
            copied += 1;
            data.to_vec()
        } else {
            requantized += 1;
            quantize(targets[i], &dequantize(t.ty, data, t.n_elements() as usize)?)?
        };
        progress(i + 1, total, &t.name);
        Ok(result)
    })?;
    let mut types: Vec<(String, usize)> = Vec::new();
    for ty in &targets {
        match types.iter_mut().find(|(n, _)| n == ty.name()) {
            Some(e) => e.1 += 1,
            None => types.push((ty.name().to_string(), 1)),
        }
    }
    types.sort();
    Ok(RequantizeReport { requantized, copied, types, bytes_in: bytes.len() as u64, bytes_out: counted.bytes })
}

/// Counts what passes through, for the report.
struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
