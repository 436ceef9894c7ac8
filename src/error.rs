//! The one error type of the library. Every variant has a stable `code()` that crosses into
//! JavaScript as the error's `name`, so callers can branch on it without parsing messages.

use crate::gguf::GgufError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a valid GGUF (truncated, corrupt, hostile).
    #[error("invalid GGUF: {0}")]
    Gguf(#[from] GgufError),
    /// A valid file describing something we cannot run (architecture, tensor type, shapes).
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// No WebGPU / no usable adapter or device.
    #[error("WebGPU unavailable: {0}")]
    WebGpuUnavailable(String),
    /// A GPU operation failed (validation, out of memory).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The GPU device was lost (driver reset, GPU process crash, `destroy()`): the model's
    /// buffers are gone. Sticky: every later call on the model fails the same way; loading the
    /// model again (a new device) is the way out.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The prompt (plus what is already cached) does not fit in the context window.
    #[error("context full: {needed} tokens needed, the context holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    /// Generation stopped by interrupt() or an AbortSignal.
    #[error("aborted")]
    Aborted,
    /// The model (or its KV cache) does not fit in the memory this build can address (wasm32:
    /// 4 GiB), or a tensor exceeds the GPU's buffer limits; found before the allocation.
    #[error("model too large: {0}")]
    ModelTooLarge(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("conversion: {0}")]
    Convert(String),
    #[error("I/O: {0}")]
    Io(String),
}

impl Error {
    /// Stable machine-readable name, used as the JS `Error.name`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf(_) => "InvalidModelFile",
            Error::UnsupportedModel(_) => "UnsupportedModel",
            Error::Tokenizer(_) => "TokenizerError",
            Error::ChatTemplate(_) => "ChatTemplateError",
            Error::WebGpuUnavailable(_) => "WebGPUUnavailable",
            Error::Gpu(_) => "GPUError",
            Error::DeviceLost(_) => "DeviceLost",
            Error::ContextFull { .. } => "ContextFull",
            Error::Aborted => "Aborted",
            Error::ModelTooLarge(_) => "ModelTooLarge",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::Convert(_) => "ConversionError",
            Error::Io(_) => "IOError",
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
