//! A model's weights on the GPU: every matrix repacked once ([`super::repack`]) and uploaded,
//! norms as f32 buffers. The tied embedding is one buffer used twice (gather and logits).
//!
//! The decode step fuses products that read the same input, so their matrices are stacked at
//! load when their types agree: Q, K and V become one [q_dim + 2 kv_dim, dim] matrix in Q's slot,
//! gate and up one [2 ffn_dim, dim] matrix with interleaved rows (gate i, up i) in gate's slot
//! (the SwiGLU epilogue pairs adjacent outputs); the merged slots hold [`GpuTensor::Merged`]. A
//! file whose Q, K, V (or gate, up) types differ keeps them apart and runs them unfused.

use std::collections::HashMap;
use std::rc::Rc;

use super::{concat_rows, interleave_rows, Gpu, GpuWeight};
use crate::model::{Global, ModelConfig, Role, Slot, TensorPlace, TensorPlaces, TensorRef, Weights};
use crate::quant::GgmlType;

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

/// Uploads a model tensor by tensor, in whatever order the tensors come (a download delivers
/// them in file order): each is repacked and written to the GPU as soon as it is complete, so
/// only one tensor (and the parts of a stacked matrix waiting for their partners) is ever held.
pub struct GpuModelBuilder {
    gpu: Rc<Gpu>,
    /// Per block: Q/K/V stacked, gate/up interleaved.
    fused: Vec<(bool, bool)>,
    slots: Weights<Option<GpuTensor>>,
    /// Raw GGUF bytes of parts of a stacked matrix whose partners have not arrived yet.
    held: HashMap<(usize, Role), Vec<u8>>,
    held_bytes: usize,
    /// The most bytes `held` reached (reported: part of the loader's bounded window).
    pub peak_held_bytes: usize,
}

impl GpuModelBuilder {
    /// Plans the upload from the tensors' places: which matrices are stacked, and whether each
    /// fits the device (checked before anything is uploaded).
    pub fn new(gpu: Rc<Gpu>, places: &TensorPlaces<'_>) -> crate::Result<Self> {
        check_fits(&gpu, places)?;
        let fused = places.layers.iter().map(|l| (stackable(&[&l.wq, &l.wk, &l.wv]), stackable(&[&l.w_gate, &l.w_up]))).collect();
        let slots = places.map(|_, _| Ok::<_, crate::Error>(None))?;
        Ok(GpuModelBuilder { gpu, fused, slots, held: HashMap::new(), held_bytes: 0, peak_held_bytes: 0 })
    }

    /// Uploads the tensor of `slot` (its bytes complete), or holds it until the rest of its
    /// stacked matrix has come.
    pub fn add(&mut self, slot: Slot, t: &TensorRef<'_>) -> crate::Result<()> {
        let gpu = &*self.gpu;
        let made = match slot {
            Slot::Global(Global::OutputNorm) => norm(gpu, t)?,
            Slot::Global(_) => GpuTensor::Matrix(GpuWeight::from_tensor(gpu, t)?),
            Slot::Block(_, role) if role.is_norm() => norm(gpu, t)?,
            Slot::Block(i, role) => {
                let (qkv, gate_up) = self.fused[i];
                let group: &[Role] = match role {
                    Role::Q | Role::K | Role::V if qkv => &[Role::Q, Role::K, Role::V],
                    Role::Gate | Role::Up if gate_up => &[Role::Gate, Role::Up],
                    _ => &[],
                };
                if group.is_empty() {
                    GpuTensor::Matrix(GpuWeight::from_tensor(gpu, t)?)
                } else {
                    return self.add_stacked(i, role, group, t);
                }
            }
        };
        self.put(slot, made)
    }

    fn add_stacked(&mut self, i: usize, role: Role, group: &[Role], t: &TensorRef<'_>) -> crate::Result<()> {
        if self.held.contains_key(&(i, role)) {
            return Err(crate::Error::InvalidArgument(format!("tensor {} added twice", t.name)));
        }
        self.held.insert((i, role), t.data.to_vec());
        self.held_bytes += t.data.len();
        self.peak_held_bytes = self.peak_held_bytes.max(self.held_bytes);
        if !group.iter().all(|r| self.held.contains_key(&(i, *r))) {
            return Ok(());
        }
        let parts: Vec<Vec<u8>> = group.iter().map(|r| self.held.remove(&(i, *r)).expect("checked above")).collect();
        self.held_bytes -= parts.iter().map(Vec::len).sum::<usize>();
        let (ty, cols) = (t.ty, t.cols);
        let rows = parts.iter().map(|p| p.len()).sum::<usize>() / (ty.bytes_for(cols as u64).expect("shape checked") as usize);
        let (label, bytes) = if group[0] == Role::Q {
            ("attn_qkv", concat_rows(ty, cols, &parts.iter().map(Vec::as_slice).collect::<Vec<_>>())?)
        } else {
            ("ffn_gate_up", interleave_rows(ty, cols, &parts[0], &parts[1])?)
        };
        drop(parts);
        let w = GpuWeight::upload(&self.gpu, label, ty, rows, cols, &bytes)?;
        self.put(Slot::Block(i, group[0]), GpuTensor::Matrix(w))?;
        for r in &group[1..] {
            self.put(Slot::Block(i, *r), GpuTensor::Merged)?;
        }
        Ok(())
    }

    fn put(&mut self, slot: Slot, t: GpuTensor) -> crate::Result<()> {
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                *s = Some(t);
                Ok(())
            }
            _ => Err(crate::Error::InvalidArgument(format!("no free slot {slot:?} for a tensor"))),
        }
    }

    /// The model, once every tensor of `places` has been added.
    pub fn finish(mut self, places: &TensorPlaces<'_>) -> crate::Result<GpuModel> {
        let weights = places.map(|slot, p| {
            self.slots.get_mut(slot).and_then(Option::take).ok_or_else(|| crate::Error::InvalidArgument(format!("tensor {} never arrived", p.name)))
        })?;
        self.gpu.take_error()?;
        Ok(GpuModel { gpu: self.gpu, weights })
    }
}

fn norm(gpu: &Gpu, t: &TensorRef<'_>) -> crate::Result<GpuTensor> {
    Ok(GpuTensor::Norm(gpu.storage_buffer_init(t.name, bytemuck::cast_slice(&t.to_f32()?))))
}

/// Whether matrices can be stacked into one product: same type and input width.
fn stackable(parts: &[&TensorPlace<'_>]) -> bool {
    parts.iter().all(|t| t.ty == parts[0].ty && t.cols == parts[0].cols)
}

/// Every weight must fit in one buffer and one storage binding of this device (Q/K/V and
/// gate/up stacked); a model that does not is refused before anything is uploaded, naming the
/// limit.
fn check_fits(gpu: &Gpu, t: &TensorPlaces<'_>) -> crate::Result<()> {
    let (binding, buffer) = (gpu.limits.max_storage_buffer_binding_size, gpu.limits.max_buffer_size);
    let (max, limit) = if binding <= buffer { (binding, "maxStorageBufferBindingSize") } else { (buffer, "maxBufferSize") };
    let fits = |name: &str, ty: GgmlType, file_bytes: u64| {
        let need = super::repack::largest_buffer_bytes(ty, file_bytes);
        if need > max {
            // ModelTooLarge, not UnsupportedModel: the file is fine (the page keeps it cached, and
            // the CPU backend or a bigger GPU can run it).
            return Err(crate::Error::ModelTooLarge(format!("tensor {name} needs about {need} bytes in one GPU buffer; this adapter's {limit} is {max}")));
        }
        Ok(())
    };
    for (slot, w) in t.iter() {
        if !slot.is_norm() {
            fits(w.name, w.ty, w.len)?;
        }
    }
    for l in &t.layers {
        if stackable(&[&l.wq, &l.wk, &l.wv]) {
            fits(l.wq.name, l.wq.ty, l.wq.len + l.wk.len + l.wv.len)?;
        }
        if stackable(&[&l.w_gate, &l.w_up]) {
            fits(l.w_gate.name, l.w_gate.ty, l.w_gate.len + l.w_up.len)?;
        }
    }
    Ok(())
}
