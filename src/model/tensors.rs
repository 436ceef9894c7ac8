//! Typed, shape-checked views of a model's tensors inside the GGUF bytes (no copies).
//! Names follow llama.cpp: token_embd, output_norm, output, blk.N.{attn_norm, attn_q, attn_k,
//! attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight

use crate::gguf::GgufFile;
use crate::model::ModelConfig;
use crate::quant::GgmlType;
use crate::Error;

#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    /// Output features (GGUF dims[1]); 1 for vectors.
    pub rows: usize,
    /// Input features, contiguous (GGUF dims[0]).
    pub cols: usize,
    pub data: &'a [u8],
}

impl TensorRef<'_> {
    /// The whole tensor dequantised to f32, row-major [rows, cols].
    pub fn to_f32(&self) -> crate::Result<Vec<f32>> {
        crate::quant::dequantize(self.ty, self.data, self.rows * self.cols)
    }
}

#[derive(Debug, Clone)]
pub struct LayerTensors<'a> {
    pub attn_norm: TensorRef<'a>, // [dim]
    pub wq: TensorRef<'a>,        // [q_dim, dim]
    pub wk: TensorRef<'a>,        // [kv_dim, dim]
    pub wv: TensorRef<'a>,        // [kv_dim, dim]
    pub wo: TensorRef<'a>,        // [dim, q_dim]
    pub ffn_norm: TensorRef<'a>,  // [dim]
    pub w_gate: TensorRef<'a>,    // [ffn_dim, dim]
    pub w_up: TensorRef<'a>,      // [ffn_dim, dim]
    pub w_down: TensorRef<'a>,    // [dim, ffn_dim]
}

#[derive(Debug, Clone)]
pub struct ModelTensors<'a> {
    pub token_embd: TensorRef<'a>,     // [n_vocab, dim]
    pub output_norm: TensorRef<'a>,    // [dim]
    /// None when tied: the logits use token_embd.
    pub output: Option<TensorRef<'a>>, // [n_vocab, dim]
    pub layers: Vec<LayerTensors<'a>>, // n_layers unique blocks
}

impl<'a> ModelTensors<'a> {
    /// Finds and shape-checks every tensor the config needs.
    pub fn from_gguf(file: &'a GgufFile, bytes: &'a [u8], cfg: &ModelConfig) -> crate::Result<Self> {
        check_shapes(file, cfg)?;
        let get = |name: &str| -> crate::Result<TensorRef<'a>> {
            let t = file.tensor(name).ok_or_else(|| unsupported(format!("missing tensor {name}")))?;
            let (rows, cols) = matrix_shape(&t.dims).expect("checked by check_shapes");
            let data = file.try_tensor_data(bytes, t).ok_or_else(|| {
                Error::InvalidArgument(format!("tensor {name} lies outside the {}-byte buffer given", bytes.len()))
            })?;
            Ok(TensorRef { name: &t.name, ty: t.ty, rows, cols, data })
        };
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let b = |s: &str| get(&format!("blk.{i}.{s}.weight"));
                Ok(LayerTensors {
                    attn_norm: b("attn_norm")?,
                    wq: b("attn_q")?,
                    wk: b("attn_k")?,
                    wv: b("attn_v")?,
                    wo: b("attn_output")?,
                    ffn_norm: b("ffn_norm")?,
                    w_gate: b("ffn_gate")?,
                    w_up: b("ffn_up")?,
                    w_down: b("ffn_down")?,
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(ModelTensors {
            token_embd: get("token_embd.weight")?,
            output_norm: get("output_norm.weight")?,
            output: if cfg.tied_embeddings { None } else { Some(get("output.weight")?) },
            layers,
        })
    }

    /// The matrix used for the logits (output.weight, or token_embd when tied).
    pub fn lm_head(&self) -> &TensorRef<'a> {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

fn unsupported(msg: String) -> Error {
    Error::UnsupportedModel(msg)
}

/// GGUF dims `[cols, rows, 1, 1]` as (rows, cols); None if a dimension beyond the second is not 1.
fn matrix_shape(dims: &[u64]) -> Option<(usize, usize)> {
    if dims.is_empty() || dims.iter().skip(2).any(|&d| d != 1) {
        return None;
    }
    let cols = usize::try_from(dims[0]).ok()?;
    let rows = usize::try_from(dims.get(1).copied().unwrap_or(1)).ok()?;
    Some((rows, cols))
}

/// (name, rows, cols, is a norm vector) for every tensor a model with this config must have.
pub(crate) fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, usize, usize, bool)> {
    let (d, q, kv, f, v) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim, cfg.n_vocab);
    let mut out = vec![("token_embd.weight".to_string(), v, d, false), ("output_norm.weight".to_string(), 1, d, true)];
    if !cfg.tied_embeddings {
        out.push(("output.weight".to_string(), v, d, false));
    }
    for i in 0..cfg.n_layers {
        for (s, rows, cols, norm) in [
            ("attn_norm", 1, d, true),
            ("attn_q", q, d, false),
            ("attn_k", kv, d, false),
            ("attn_v", kv, d, false),
            ("attn_output", d, q, false),
            ("ffn_norm", 1, d, true),
            ("ffn_gate", f, d, false),
            ("ffn_up", f, d, false),
            ("ffn_down", d, f, false),
        ] {
            out.push((format!("blk.{i}.{s}.weight"), rows, cols, norm));
        }
    }
    out
}

/// Checks that the tensor table is exactly what `cfg` describes: every tensor present with its
/// shape, norms in a float type, and nothing else (biases, extra blocks, unknown tensors would be
/// silently ignored otherwise, giving wrong outputs).
pub(crate) fn check_shapes(file: &GgufFile, cfg: &ModelConfig) -> crate::Result<()> {
    let expected = expected_tensors(cfg);
    for (name, rows, cols, norm) in &expected {
        let t = file.tensor(name).ok_or_else(|| unsupported(format!("missing tensor {name}")))?;
        if matrix_shape(&t.dims) != Some((*rows, *cols)) {
            return Err(unsupported(format!(
                "tensor {name} has dims {:?}, expected [{cols}, {rows}] from the metadata",
                t.dims
            )));
        }
        if *norm && !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(unsupported(format!("norm tensor {name} is {}, expected a float type", t.ty.name())));
        }
    }
    if file.tensors.len() != expected.len() {
        let known: std::collections::HashSet<&str> = expected.iter().map(|e| e.0.as_str()).collect();
        let extra = file.tensors.iter().find(|t| !known.contains(t.name.as_str())).map_or("?", |t| t.name.as_str());
        return Err(unsupported(format!("unexpected tensor {extra} (not part of a {}-layer {:?} model)", cfg.n_layers, cfg.arch)));
    }
    Ok(())
}
