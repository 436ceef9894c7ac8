//! Weight matrices on the GPU in the layout of [`super::GpuLayout`].

use super::repack_for_gpu;
use super::Gpu;
use crate::quant::GgmlType;

pub struct GpuWeight {
    pub ty: GgmlType,
    pub rows: u32,
    pub cols: u32,
    /// u32 words per row in `data`.
    pub row_words: u32,
    /// array<u32>: packed values or quants (see GpuLayout).
    pub data: wgpu::Buffer,
    /// array<u32>: block and sub-block scales (the file's f16 bits and small integers) and the
    /// quants' high bits; see GpuLayout.
    pub scales: wgpu::Buffer,
}

impl GpuWeight {
    /// Repacks a [rows, cols] tensor from its GGUF bytes and uploads it.
    pub fn upload(gpu: &Gpu, label: &str, ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> crate::Result<Self> {
        let layout = repack_for_gpu(ty, rows, cols, bytes)?;
        let data = gpu.storage_buffer_init(label, bytemuck::cast_slice(&layout.data));
        let scales = gpu.storage_buffer_init(label, bytemuck::cast_slice(&layout.scales));
        Ok(GpuWeight { ty, rows: rows as u32, cols: cols as u32, row_words: layout.row_words as u32, data, scales })
    }

    pub fn from_tensor(gpu: &Gpu, t: &crate::model::TensorRef<'_>) -> crate::Result<Self> {
        Self::upload(gpu, t.name, t.ty, t.rows, t.cols, t.data)
    }
}

/// How shaders/weights.wgsl decodes one weight type: its shape constants, and which of the
/// per-type functions the generic names (piece_raw, unit_high, block_dm, unit_dm_in) stand for.
struct Decoder {
    /// Elements and pieces per 16-byte unit.
    epu: u32,
    pieces: u32,
    /// Nibble units (two slots per piece); a (d, off) per slot; a block word per 8 units.
    nibble: bool,
    split: bool,
    block_scaled: bool,
    /// Suffixes of the WGSL functions piece_raw_*, unit_high_*, block_dm_*, unit_dm_*.
    piece_raw: &'static str,
    unit_high: &'static str,
    block_dm: &'static str,
    unit_dm: &'static str,
}

fn decoder(ty: GgmlType) -> Decoder {
    let nibble = |unit_dm, piece_raw, unit_high, block_dm| Decoder {
        epu: 32,
        pieces: 4,
        nibble: true,
        split: matches!(ty, GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q6_K),
        block_scaled: block_dm != "none",
        piece_raw,
        unit_high,
        block_dm,
        unit_dm,
    };
    let plain = |epu, pieces, piece_raw, unit_dm| Decoder {
        epu,
        pieces,
        nibble: false,
        split: false,
        block_scaled: false,
        piece_raw,
        unit_high: "none",
        block_dm: "none",
        unit_dm,
    };
    match ty {
        GgmlType::F32 => plain(4, 1, "f32", "float"),
        GgmlType::F16 => plain(8, 2, "f16", "float"),
        GgmlType::BF16 => plain(8, 2, "bf16", "float"),
        GgmlType::Q8_0 => plain(16, 4, "q8_0", "q8_0"),
        GgmlType::Q4_0 => nibble("q4_0", "nibble", "none", "none"),
        GgmlType::Q4_1 => nibble("q4_1", "nibble", "none", "none"),
        GgmlType::Q5_0 => nibble("q5_0", "nibble5", "q5_0", "none"),
        GgmlType::Q5_1 => nibble("q5_1", "nibble5", "q5_1", "none"),
        GgmlType::Q2_K => nibble("q2_k", "nibble", "none", "k"),
        GgmlType::Q3_K => nibble("q3_k", "nibble", "none", "none"),
        GgmlType::Q4_K => nibble("q4_k", "nibble", "none", "k"),
        GgmlType::Q5_K => nibble("q4_k", "nibble5", "q5_k", "k"),
        GgmlType::Q6_K => nibble("q6_k", "nibble6", "q6_k", "none"),
    }
}

/// The prelude part that binds weights.wgsl's decoder to `ty`: WTYPE, the shape constants and
/// the generic function names, so a kernel's text holds only this type's decoding (one text per
/// type: lavapipe creates pipelines 2-4x faster than from one text with every type's branches).
pub(crate) fn decoder_wgsl(ty: GgmlType) -> String {
    let d = decoder(ty);
    format!(
        "const WTYPE: u32 = {}u;
const W_EPU: u32 = {}u;
const W_PIECES: u32 = {}u;
const W_NIBBLE: bool = {};
const W_SPLIT: bool = {};
const W_BLOCK_SCALED: bool = {};
fn piece_raw(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {{ return piece_raw_{}(w, h, p); }}
fn unit_high(row: u32, u: u32) -> vec2<u32> {{ return unit_high_{}(row, u); }}
fn block_dm(row: u32, u: u32) -> vec2<f32> {{ return block_dm_{}(row, u); }}
fn unit_dm_in(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {{ return unit_dm_{}(row, u, block); }}
",
        super::kernel::weight_type_code(ty),
        d.epu,
        d.pieces,
        d.nibble,
        d.split,
        d.block_scaled,
        d.piece_raw,
        d.unit_high,
        d.block_dm,
        d.unit_dm
    )
}
