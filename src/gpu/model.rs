//! A model's weights on the GPU: every matrix repacked once ([`super::repack`]) and uploaded,
//! norms as f32 buffers. The tied embedding is one buffer used twice (gather and logits).

use std::rc::Rc;

use super::{Gpu, GpuWeight};
use crate::model::{ModelTensors, TensorRef, Weights};

/// A tensor on the GPU: a weight matrix, or a norm vector as f32 [dim].
pub enum GpuTensor {
    Matrix(GpuWeight),
    Norm(wgpu::Buffer),
}

impl GpuTensor {
    pub fn matrix(&self) -> &GpuWeight {
        match self {
            GpuTensor::Matrix(w) => w,
            GpuTensor::Norm(_) => unreachable!("a norm slot holds a vector, not a matrix"),
        }
    }

    pub fn norm(&self) -> &wgpu::Buffer {
        match self {
            GpuTensor::Norm(b) => b,
            GpuTensor::Matrix(_) => unreachable!("a matrix slot holds a matrix, not a norm"),
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
        let weights = tensors.map(|slot, t| {
            if slot.is_norm() {
                let v = t.to_f32()?;
                Ok::<_, crate::Error>(GpuTensor::Norm(gpu.storage_buffer_init(t.name, bytemuck::cast_slice(&v))))
            } else {
                Ok(GpuTensor::Matrix(GpuWeight::from_tensor(&gpu, t)?))
            }
        })?;
        gpu.take_error()?;
        Ok(GpuModel { gpu, weights })
    }

    pub fn lm_head(&self) -> &GpuWeight {
        self.weights.lm_head().matrix()
    }
}

/// Every weight must fit in one storage binding of this device.
fn check_fits(gpu: &Gpu, t: &ModelTensors<'_>) -> crate::Result<()> {
    let max = gpu.limits.max_storage_buffer_binding_size as u64;
    for (slot, w) in t.iter() {
        if slot.is_norm() {
            continue;
        }
        let w: &TensorRef<'_> = w;
        // The GPU layout is at most 4/3 of the file size (scales widened to f32).
        let need = (w.data.len() as u64) * 4 / 3 + 64;
        if need > max {
            return Err(crate::Error::UnsupportedModel(format!(
                "tensor {} needs about {need} bytes in one buffer; this GPU allows {max}",
                w.name
            )));
        }
    }
    Ok(())
}
