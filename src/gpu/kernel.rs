//! The kernels: one WGSL file per family under `shaders/`, each prefixed with `common.wgsl`
//! (the `Step` uniform and shared helpers) when compiled.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Token embedding gather from a (quantised) table.
    Embed,
    /// y = x·Wᵀ for every weight type (matrix-vector for decode, tiled matrix-matrix for prefill),
    /// optionally accumulating into y (fused residual add); specialised with GATED it computes
    /// silu(x·Wgᵀ) * (x·Wuᵀ), the SwiGLU feed-forward's first half, in one pass.
    Matmul,
    RmsNorm,
    /// RoPE on q and k, then k and v written into the KV cache.
    RopeKv,
    /// GQA causal attention (prefill and split-K decode) with a running-max softmax.
    Attention,
    /// Repetition penalty, temperature and top-k candidate selection over the logits.
    TopK,
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// The weight layout (WTYPE, shape constants, units), for the kernels that read weights.
const WEIGHTS: &str = include_str!("../../shaders/weights.wgsl");

impl Kernel {
    pub fn file_source(self) -> &'static str {
        match self {
            Kernel::Embed => include_str!("../../shaders/embed.wgsl"),
            Kernel::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::RmsNorm => include_str!("../../shaders/rmsnorm.wgsl"),
            Kernel::RopeKv => include_str!("../../shaders/rope_kv.wgsl"),
            Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
            Kernel::TopK => include_str!("../../shaders/topk.wgsl"),
        }
    }

    /// Full source: `enable f16;` when the f16 path is on, then common.wgsl, weights.wgsl for the
    /// kernels that read weights, then the file.
    pub fn source(self, f16: bool) -> String {
        let mut s = String::new();
        if f16 {
            s.push_str("enable f16;\nalias act_t = f16;\n");
        } else {
            s.push_str("alias act_t = f32;\n");
        }
        s.push_str(COMMON);
        s.push('\n');
        if matches!(self, Kernel::Embed | Kernel::Matmul) {
            s.push_str(WEIGHTS);
            s.push('\n');
        }
        s.push_str(self.file_source());
        s
    }
}
