//! A model loaded onto the GPU: config, tokenizer, and every weight uploaded once.

use std::rc::Rc;

use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuWeight};
use crate::model::{ModelConfig, ModelTensors, TensorRef};
use crate::quant::GgmlType;
use crate::tokenizer::Tokenizer;

/// One transformer block's weights on the GPU (shared by every repeat of the block).
pub struct BlockWeights {
    pub attn_norm: wgpu::Buffer, // f32 [dim]
    pub wq: GpuWeight,
    pub wk: GpuWeight,
    pub wv: GpuWeight,
    pub wo: GpuWeight,
    pub ffn_norm: wgpu::Buffer, // f32 [dim]
    pub w_gate: GpuWeight,
    pub w_up: GpuWeight,
    pub w_down: GpuWeight,
}

pub struct ModelWeights {
    /// Also the logits matrix when the model ties embeddings (one buffer, used twice).
    pub token_embd: GpuWeight,
    pub output: Option<GpuWeight>,
    pub output_norm: wgpu::Buffer,
    pub blocks: Vec<BlockWeights>,
}

impl ModelWeights {
    pub fn lm_head(&self) -> &GpuWeight {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// A line of `mobilellm info`: tensor name, type, GGUF dims.
#[derive(Debug, Clone)]
pub struct TensorSummary {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub bytes: u64,
}

pub struct LoadedModel {
    pub gpu: Rc<Gpu>,
    pub cfg: ModelConfig,
    pub tokenizer: Tokenizer,
    pub weights: ModelWeights,
    pub tensors: Vec<TensorSummary>,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Size of the GGUF the model came from.
    pub file_bytes: u64,
}

impl LoadedModel {
    /// Parses, validates and uploads a whole GGUF held in memory. Nothing is uploaded before
    /// the file, config, tensors and tokenizer have all been validated.
    pub fn load(gpu: Rc<Gpu>, bytes: &[u8]) -> crate::Result<Rc<Self>> {
        let file = GgufFile::parse(bytes)?;
        let cfg = ModelConfig::from_gguf(&file)?;
        let tensors = ModelTensors::from_gguf(&file, bytes, &cfg)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        check_fits(&gpu, &tensors)?;
        let weights = upload(&gpu, &tensors)?;
        gpu.take_error()?;
        Ok(Rc::new(LoadedModel {
            gpu,
            cfg,
            tokenizer,
            weights,
            tensors: file
                .tensors
                .iter()
                .map(|t| TensorSummary { name: t.name.clone(), ty: t.ty, dims: t.dims.clone(), bytes: t.n_bytes })
                .collect(),
            name: file.get_str("general.name").map(str::to_string),
            file_bytes: bytes.len() as u64,
        }))
    }
}

/// Every weight must fit in one storage binding of this device.
fn check_fits(gpu: &Gpu, t: &ModelTensors<'_>) -> crate::Result<()> {
    let max = gpu.limits.max_storage_buffer_binding_size as u64;
    let mut all: Vec<&TensorRef<'_>> = vec![&t.token_embd];
    all.extend(t.output.iter());
    for l in &t.layers {
        all.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
    }
    for w in all {
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

fn norm_buffer(gpu: &Gpu, t: &TensorRef<'_>) -> crate::Result<wgpu::Buffer> {
    let v = t.to_f32()?;
    Ok(gpu.storage_buffer_init(t.name, bytemuck::cast_slice(&v)))
}

fn upload(gpu: &Gpu, t: &ModelTensors<'_>) -> crate::Result<ModelWeights> {
    let mut blocks = Vec::with_capacity(t.layers.len());
    for l in &t.layers {
        blocks.push(BlockWeights {
            attn_norm: norm_buffer(gpu, &l.attn_norm)?,
            wq: GpuWeight::from_tensor(gpu, &l.wq)?,
            wk: GpuWeight::from_tensor(gpu, &l.wk)?,
            wv: GpuWeight::from_tensor(gpu, &l.wv)?,
            wo: GpuWeight::from_tensor(gpu, &l.wo)?,
            ffn_norm: norm_buffer(gpu, &l.ffn_norm)?,
            w_gate: GpuWeight::from_tensor(gpu, &l.w_gate)?,
            w_up: GpuWeight::from_tensor(gpu, &l.w_up)?,
            w_down: GpuWeight::from_tensor(gpu, &l.w_down)?,
        });
    }
    Ok(ModelWeights {
        token_embd: GpuWeight::from_tensor(gpu, &t.token_embd)?,
        output: t.output.as_ref().map(|o| GpuWeight::from_tensor(gpu, o)).transpose()?,
        output_norm: norm_buffer(gpu, &t.output_norm)?,
        blocks,
    })
}
