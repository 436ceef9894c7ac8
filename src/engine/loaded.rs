//! A loaded model: config, tokenizer, and its weights in the form one backend reads.

use std::rc::Rc;

use super::backend::{BackendKind, ModelBackend};
use super::streaming::StreamingGpuLoad;
use crate::cpu::backend::CpuWeights;
use crate::cpu::kernels::{KvType, Pool};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuOptions};
use crate::model::{ModelConfig, ModelTensors, TensorPlaces};
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
/// config and tokenizer (tensor views are re-made from `file` while the bytes are borrowed).
pub(super) struct Parsed {
    pub(super) file: GgufFile,
    pub(super) cfg: ModelConfig,
    tokenizer: Tokenizer,
}

impl Parsed {
    fn new(bytes: &[u8]) -> crate::Result<Self> {
        Self::from_file(GgufFile::parse(bytes)?)
    }

    /// Validates what the header describes: config, every tensor's presence and shape (the
    /// parser checked their bounds), tokenizer. Needs none of the tensor data.
    pub(super) fn from_file(file: GgufFile) -> crate::Result<Self> {
        let cfg = ModelConfig::from_gguf(&file)?;
        TensorPlaces::from_gguf(&file, &cfg)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        Ok(Parsed { file, cfg, tokenizer })
    }

    fn tensors<'a>(&'a self, bytes: &'a [u8]) -> crate::Result<ModelTensors<'a>> {
        ModelTensors::from_gguf(&self.file, bytes, &self.cfg)
    }

    pub(super) fn finish(self, file_bytes: u64, backend: ModelBackend) -> Rc<LoadedModel> {
        Rc::new(LoadedModel {
            tensors: self.file.tensors.iter().map(|t| TensorSummary { name: t.name.clone(), ty: t.ty, dims: t.dims.clone(), bytes: t.n_bytes }).collect(),
            name: self.file.get_str("general.name").map(str::to_string),
            file_bytes,
            cfg: self.cfg,
            tokenizer: self.tokenizer,
            backend,
        })
    }
}

/// How to load a model: which backend, and its settings.
#[derive(Clone)]
pub struct LoadOptions {
    pub backend: BackendKind,
    /// GPU backend: precision.
    pub gpu: GpuOptions,
    /// CPU backend: threads (0 = what the host offers) and KV-cache element type.
    pub threads: usize,
    pub kv_type: KvType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        // f16 keys and values: half the memory of f32 (what llama.cpp does too).
        LoadOptions { backend: BackendKind::Auto, gpu: GpuOptions::default(), threads: 0, kv_type: KvType::F16 }
    }
}

impl LoadedModel {
    /// Loads `bytes` on the backend `opts` asks for. `Auto` takes the GPU when wgpu finds a real
    /// one, and the CPU backend when there is no adapter or only a software one (lavapipe,
    /// SwiftShader: CPUs emulating a GPU, far slower than running CPU code).
    pub async fn open(bytes: Vec<u8>, opts: &LoadOptions) -> crate::Result<Rc<Self>> {
        let cpu = |bytes| {
            let threads = if opts.threads == 0 { crate::cpu::backend::default_threads() } else { opts.threads };
            Self::load_cpu(bytes, Pool::new(threads), opts.kv_type)
        };
        match opts.backend {
            BackendKind::Cpu => cpu(bytes),
            BackendKind::Gpu => Self::load(Rc::new(Gpu::new(&opts.gpu).await?), &bytes),
            BackendKind::Auto => match Gpu::new(&opts.gpu).await {
                Ok(gpu) if !gpu.cpu_like => Self::load(Rc::new(gpu), &bytes),
                _ => cpu(bytes),
            },
        }
    }

    /// Parses, validates and uploads a whole GGUF held in memory to the GPU: the streaming load
    /// ([`StreamingGpuLoad`]) given the file as one chunk, read in place. Nothing is uploaded
    /// before the header, config, tensor shapes and tokenizer have all been validated.
    pub fn load(gpu: Rc<Gpu>, bytes: &[u8]) -> crate::Result<Rc<Self>> {
        let mut load = StreamingGpuLoad::new(gpu, bytes.len() as u64);
        load.push(bytes)?;
        load.finish()
    }

    /// Parses and validates a whole GGUF held in memory and keeps it, as it is, for the CPU
    /// backend (the file is the weights: no copy, no f32 conversion), computing on `pool`.
    pub fn load_cpu(bytes: Vec<u8>, pool: Pool, kv_type: KvType) -> crate::Result<Rc<Self>> {
        let parsed = Parsed::new(&bytes)?;
        let layout = CpuWeights::layout(&parsed.tensors(&bytes)?, &bytes)?;
        let file_bytes = bytes.len() as u64;
        Ok(parsed.finish(file_bytes, ModelBackend::Cpu(CpuWeights::new(bytes, layout, pool, kv_type))))
    }

    /// The GPU context, when the WebGPU backend runs this model.
    pub fn gpu(&self) -> Option<&Rc<Gpu>> {
        match &self.backend {
            ModelBackend::Gpu(g) => Some(&g.gpu),
            ModelBackend::Cpu(_) => None,
        }
    }

    /// "webgpu" or "cpu".
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            ModelBackend::Gpu(_) => "webgpu",
            ModelBackend::Cpu(_) => "cpu",
        }
    }

    /// Threads computing a step (1 on the GPU backend: the GPU does the work).
    pub fn threads(&self) -> usize {
        match &self.backend {
            ModelBackend::Gpu(_) => 1,
            ModelBackend::Cpu(w) => w.pool.threads(),
        }
    }

    /// A one-line description of what runs the model (adapter, precision; or CPU threads, SIMD).
    pub fn device_summary(&self) -> String {
        match &self.backend {
            ModelBackend::Gpu(g) => g.gpu.adapter_summary(),
            ModelBackend::Cpu(w) => {
                format!("CPU, {} thread{}, {}", w.pool.threads(), if w.pool.threads() == 1 { "" } else { "s" }, crate::cpu::kernels::Isa::best().name())
            }
        }
    }

    /// Bytes the backend holds for the weights (GPU buffers, or the file kept in memory).
    pub fn weight_bytes(&self) -> u64 {
        match &self.backend {
            ModelBackend::Gpu(g) => g.gpu.allocated_bytes(),
            ModelBackend::Cpu(w) => w.bytes(),
        }
    }
}
