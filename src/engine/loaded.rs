//! A loaded model: config, tokenizer, and its weights in the form one backend reads.

use std::rc::Rc;

use super::backend::ModelBackend;
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuModel};
use crate::model::{ModelConfig, ModelTensors};
use crate::quant::GgmlType;
use crate::tokenizer::Tokenizer;

/// A line of `mobilellm info`: tensor name, type, GGUF dims.
#[derive(Debug, Clone)]
pub struct TensorSummary {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub bytes: u64,
}

pub struct LoadedModel {
    pub cfg: ModelConfig,
    pub tokenizer: Tokenizer,
    pub backend: ModelBackend,
    pub tensors: Vec<TensorSummary>,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Size of the GGUF the model came from.
    pub file_bytes: u64,
}

/// What every backend needs from the file before it takes the weights: the parsed, validated
/// config, tensor views and tokenizer.
struct Parsed<'a> {
    file: GgufFile,
    cfg: ModelConfig,
    tokenizer: Tokenizer,
    bytes: &'a [u8],
}

impl<'a> Parsed<'a> {
    fn new(bytes: &'a [u8]) -> crate::Result<Self> {
        let file = GgufFile::parse(bytes)?;
        let cfg = ModelConfig::from_gguf(&file)?;
        // Validates every tensor's presence, shape and bounds before anything is allocated.
        ModelTensors::from_gguf(&file, bytes, &cfg)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        Ok(Parsed { file, cfg, tokenizer, bytes })
    }

    fn tensors(&self) -> crate::Result<ModelTensors<'_>> {
        ModelTensors::from_gguf(&self.file, self.bytes, &self.cfg)
    }

    fn finish(self, backend: ModelBackend) -> Rc<LoadedModel> {
        Rc::new(LoadedModel {
            tensors: self
                .file
                .tensors
                .iter()
                .map(|t| TensorSummary { name: t.name.clone(), ty: t.ty, dims: t.dims.clone(), bytes: t.n_bytes })
                .collect(),
            name: self.file.get_str("general.name").map(str::to_string),
            file_bytes: self.bytes.len() as u64,
            cfg: self.cfg,
            tokenizer: self.tokenizer,
            backend,
        })
    }
}

impl LoadedModel {
    /// Parses, validates and uploads a whole GGUF held in memory to the GPU. Nothing is uploaded
    /// before the file, config, tensors and tokenizer have all been validated.
    pub fn load(gpu: Rc<Gpu>, bytes: &[u8]) -> crate::Result<Rc<Self>> {
        let parsed = Parsed::new(bytes)?;
        let gpu_model = GpuModel::upload(gpu, &parsed.tensors()?)?;
        Ok(parsed.finish(ModelBackend::Gpu(gpu_model)))
    }

    /// The GPU context, when the WebGPU backend runs this model.
    pub fn gpu(&self) -> Option<&Rc<Gpu>> {
        match &self.backend {
            ModelBackend::Gpu(g) => Some(&g.gpu),
        }
    }

    /// "webgpu" or "cpu".
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            ModelBackend::Gpu(_) => "webgpu",
        }
    }

    /// A one-line description of what runs the model (adapter, precision; or CPU threads, SIMD).
    pub fn device_summary(&self) -> String {
        match &self.backend {
            ModelBackend::Gpu(g) => g.gpu.adapter_summary(),
        }
    }

    /// Bytes the backend holds for the weights (GPU buffers, or the file kept in memory).
    pub fn weight_bytes(&self) -> u64 {
        match &self.backend {
            ModelBackend::Gpu(g) => g.gpu.allocated_bytes(),
        }
    }
}
