//! GGUF (v2, v3) reading and writing. The reader checks every offset, count and length against
//! the bytes it was given, so a hostile file yields a [`GgufError`], never a panic or a huge
//! allocation. Layout reference: ggml's docs/gguf.md.

mod reader;
mod value;
mod writer;

pub use reader::GgufFile;
pub use value::{MetaType, MetaValue};
pub use writer::GgufWriter;

use crate::quant::GgmlType;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous (innermost) length, e.g. `[cols, rows]` for a matrix.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section (already validated).
    pub offset: u64,
    /// Size of the data in bytes (already validated to lie inside the file).
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (bad magic)")]
    BadMagic,
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated: needed {needed} bytes at offset {offset}, file has {len}")]
    Truncated { offset: u64, needed: u64, len: u64 },
    #[error("{what} count {count} is implausible for a {len}-byte file")]
    ImplausibleCount { what: &'static str, count: u64, len: u64 },
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(String),
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("metadata nesting too deep at key {0}")]
    TooDeep(String),
    #[error("duplicate {what} {name:?}")]
    Duplicate { what: &'static str, name: String },
    #[error("tensor {name:?} has unsupported type id {type_id}")]
    UnsupportedTensorType { name: String, type_id: u32 },
    #[error("tensor {name:?}: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("metadata {key:?}: {reason}")]
    BadMetadata { key: String, reason: String },
}
