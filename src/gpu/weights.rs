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
