//! The CPU backend: the same step as the WebGPU graph, computed by `cpu::kernels` (SIMD, the
//! pool's threads) on the weights exactly as the GGUF stores them. The file's bytes are kept
//! whole and never converted (no f32 copy of the model: memory is the file plus the KV caches);
//! only the norm vectors are widened to f32.

mod run;

pub use run::CpuRun;

use std::ops::Range;

use super::kernels::{KvType, Pool, QMatrix};
use crate::model::{ModelTensors, Weights};
use crate::quant::GgmlType;
use crate::{Error, Result};

#[derive(Clone, Copy)]
pub struct CpuOptions {
    /// Threads computing a step (the caller's thread included); 0 = what the host offers.
    pub threads: usize,
    /// Element type of the KV caches.
    pub kv_type: KvType,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions { threads: 0, kv_type: KvType::F16 }
    }
}

/// Where a tensor lies in the file, or (norms) its values.
pub enum CpuTensor {
    Matrix { ty: GgmlType, rows: usize, cols: usize, range: Range<usize> },
    Norm(Vec<f32>),
}

pub struct CpuWeights {
    /// The whole GGUF file, as loaded.
    bytes: Vec<u8>,
    tensors: Weights<CpuTensor>,
    pub pool: Pool,
    pub kv_type: KvType,
}

impl CpuWeights {
    /// Where each tensor of `views` (borrowed from `file`) lies in the file; norms as f32.
    pub fn layout(views: &ModelTensors<'_>, file: &[u8]) -> Result<Weights<CpuTensor>> {
        let base = file.as_ptr() as usize;
        views.map(|slot, t| {
            if slot.is_norm() {
                return Ok(CpuTensor::Norm(t.to_f32()?));
            }
            let start = (t.data.as_ptr() as usize).checked_sub(base).filter(|s| s + t.data.len() <= file.len());
            let start = start.ok_or_else(|| Error::InvalidArgument(format!("tensor {} is not inside the file given", t.name)))?;
            Ok(CpuTensor::Matrix { ty: t.ty, rows: t.rows, cols: t.cols, range: start..start + t.data.len() })
        })
    }

    /// Keeps `bytes` (the file `tensors` was laid out from) and computes on `pool`.
    pub fn new(bytes: Vec<u8>, tensors: Weights<CpuTensor>, pool: Pool, kv_type: KvType) -> Self {
        CpuWeights { bytes, tensors, pool, kv_type }
    }

    pub fn tensors(&self) -> &Weights<CpuTensor> {
        &self.tensors
    }

    pub fn matrix(&self, t: &CpuTensor) -> QMatrix<'_> {
        match t {
            CpuTensor::Matrix { ty, rows, cols, range } => QMatrix { ty: *ty, rows: *rows, cols: *cols, data: &self.bytes[range.clone()] },
            CpuTensor::Norm(_) => unreachable!("a norm slot holds a vector, not a matrix"),
        }
    }

    pub fn norm<'a>(&self, t: &'a CpuTensor) -> &'a [f32] {
        match t {
            CpuTensor::Norm(v) => v,
            CpuTensor::Matrix { .. } => unreachable!("a matrix slot holds a matrix, not a norm"),
        }
    }

    /// Bytes held for the weights: the file.
    pub fn bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// The host's parallelism (natively; in the browser the page chooses and starts the workers).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
