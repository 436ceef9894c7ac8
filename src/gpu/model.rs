//! A model's weights on the GPU: every matrix repacked once ([`super::repack`]) and uploaded,
//! norms as f32 buffers. The tied embedding is one buffer used twice (gather and logits).
//!
//! The decode step fuses products that read the same input, so their matrices are stacked at
//! load when their types agree: Q, K and V become one [q_dim + 2 kv_dim, dim] matrix in Q's slot,
//! gate and up one [2 ffn_dim, dim] matrix with interleaved rows (gate i, up i) in gate's slot
//! (the SwiGLU epilogue pairs adjacent outputs); the merged slots hold [`GpuTensor::Merged`]. A
//! file whose Q, K, V (or gate, up) types differ keeps them apart and runs them unfused.

use std::rc::Rc;

use super::{concat_rows, interleave_rows, Gpu, GpuWeight};
use crate::model::{Layer, ModelConfig, ModelTensors, Role, TensorRef, Weights};

/// A tensor on the GPU.
pub enum GpuTensor {
    Matrix(GpuWeight),
    /// A norm vector, f32 [dim].
    Norm(wgpu::Buffer),
    /// This tensor's rows live in another slot's matrix (K and V in Q's, up in gate's).
    Merged,
}

impl GpuTensor {
    pub fn matrix(&self) -> &GpuWeight {
        match self {
            GpuTensor::Matrix(w) => w,
            _ => unreachable!("this slot holds no matrix of its own"),
        }
    }

    pub fn norm(&self) -> &wgpu::Buffer {
        match self {
            GpuTensor::Norm(b) => b,
            _ => unreachable!("a matrix slot holds a matrix, not a norm"),
        }
    }

    pub fn is_merged(&self) -> bool {
        matches!(self, GpuTensor::Merged)
    }

    fn weight_bytes(&self) -> u64 {
        match self {
            GpuTensor::Matrix(w) => w.data.size() + w.scales.size(),
            _ => 0,
        }
    }
}

pub struct GpuModel {
    pub gpu: Rc<Gpu>,
    pub weights: Weights<GpuTensor>,
}

impl GpuModel {
    /// Uploads every tensor (already validated by the caller). Fails when a tensor does not fit
    /// one storage binding of this device.
    pub fn upload(gpu: Rc<Gpu>, tensors: &ModelTensors<'_>) -> crate::Result<Self> {
        check_fits(&gpu, tensors)?;
        let layers = tensors.layers.iter().map(|l| upload_layer(&gpu, l)).collect::<crate::Result<Vec<_>>>()?;
        let weights = Weights {
            token_embd: GpuTensor::Matrix(GpuWeight::from_tensor(&gpu, &tensors.token_embd)?),
            output_norm: norm(&gpu, &tensors.output_norm)?,
            output: tensors.output.as_ref().map(|o| GpuWeight::from_tensor(&gpu, o).map(GpuTensor::Matrix)).transpose()?,
            layers,
        };
        gpu.take_error()?;
        Ok(GpuModel { gpu, weights })
    }

    pub fn lm_head(&self) -> &GpuWeight {
        self.weights.lm_head().matrix()
    }

    /// Weight bytes a decode step reads: every block's matrices `block_repeat` times (each
    /// repeat runs the products again), and the logits matrix (the embedding gather reads one row).
    pub fn bytes_per_token(&self, cfg: &ModelConfig) -> u64 {
        let blocks: u64 = self.weights.layers.iter().flat_map(|l| l.iter().map(|(_, t)| t.weight_bytes())).sum();
        blocks * cfg.block_repeat as u64 + self.lm_head().data.size() + self.lm_head().scales.size()
    }
}

fn norm(gpu: &Gpu, t: &TensorRef<'_>) -> crate::Result<GpuTensor> {
    Ok(GpuTensor::Norm(gpu.storage_buffer_init(t.name, bytemuck::cast_slice(&t.to_f32()?))))
}

/// Whether matrices can be stacked into one product: same type and input width.
fn stackable(parts: &[&TensorRef<'_>]) -> bool {
    parts.iter().all(|t| t.ty == parts[0].ty && t.cols == parts[0].cols)
}

fn upload_layer(gpu: &Gpu, l: &Layer<TensorRef<'_>>) -> crate::Result<Layer<GpuTensor>> {
    let fuse_qkv = stackable(&[&l.wq, &l.wk, &l.wv]);
    let fuse_gate_up = stackable(&[&l.w_gate, &l.w_up]);
    Layer::try_build(|role| {
        let t = l.get(role);
        Ok(match role {
            Role::AttnNorm | Role::FfnNorm => norm(gpu, t)?,
            Role::Q if fuse_qkv => {
                let rows = l.wq.rows + l.wk.rows + l.wv.rows;
                let bytes = concat_rows(t.ty, t.cols, &[l.wq.data, l.wk.data, l.wv.data])?;
                GpuTensor::Matrix(GpuWeight::upload(gpu, "attn_qkv", t.ty, rows, t.cols, &bytes)?)
            }
            Role::K | Role::V if fuse_qkv => GpuTensor::Merged,
            Role::Gate if fuse_gate_up => {
                let bytes = interleave_rows(t.ty, t.cols, l.w_gate.data, l.w_up.data)?;
                GpuTensor::Matrix(GpuWeight::upload(gpu, "ffn_gate_up", t.ty, 2 * t.rows, t.cols, &bytes)?)
            }
            Role::Up if fuse_gate_up => GpuTensor::Merged,
            _ => GpuTensor::Matrix(GpuWeight::from_tensor(gpu, t)?),
        })
    })
}

/// Every weight must fit in one storage binding of this device (Q/K/V and gate/up stacked).
fn check_fits(gpu: &Gpu, t: &ModelTensors<'_>) -> crate::Result<()> {
    let max = gpu.limits.max_storage_buffer_binding_size as u64;
    // The GPU layout is at most 4/3 of the file size (scales widened to whole words).
    let fits = |name: &str, file_bytes: u64| {
        let need = file_bytes * 4 / 3 + 64;
        if need > max {
            return Err(crate::Error::UnsupportedModel(format!("tensor {name} needs about {need} bytes in one buffer; this GPU allows {max}")));
        }
        Ok(())
    };
    for (slot, w) in t.iter() {
        if !slot.is_norm() {
            fits(w.name, w.data.len() as u64)?;
        }
    }
    for l in &t.layers {
        fits(l.wq.name, (l.wq.data.len() + l.wk.data.len() + l.wv.data.len()) as u64)?;
        fits(l.w_gate.name, (l.w_gate.data.len() + l.w_up.data.len()) as u64)?;
    }
    Ok(())
}
