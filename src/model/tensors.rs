//! Typed, shape-checked views of a model's tensors inside the GGUF bytes (no copies).
//! Names follow llama.cpp: token_embd, output_norm, output, blk.N.{attn_norm, attn_q, attn_k,
//! attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight

use crate::gguf::GgufFile;
use crate::model::layer::{Global, Layer, Role, Weights};
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

/// One block's tensors as views into the file.
pub type LayerTensors<'a> = Layer<TensorRef<'a>>;

/// Every tensor of the model as views into the file.
pub type ModelTensors<'a> = Weights<TensorRef<'a>>;

/// Where a model tensor lies in its file, before its bytes are at hand (a streaming load plans
/// with these): name, type, shape and the absolute byte range.
#[derive(Debug, Clone, Copy)]
pub struct TensorPlace<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// Absolute offset of the first byte in the file.
    pub start: u64,
    pub len: u64,
}

impl<'a> TensorPlace<'a> {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// The tensor as a view of `data`, its bytes (exactly `len` of them).
    pub fn view<'d>(&self, data: &'d [u8]) -> TensorRef<'d>
    where
        'a: 'd,
    {
        debug_assert_eq!(data.len() as u64, self.len);
        TensorRef { name: self.name, ty: self.ty, rows: self.rows, cols: self.cols, data }
    }
}

/// Every tensor of the model with its place in the file.
pub type TensorPlaces<'a> = Weights<TensorPlace<'a>>;

impl<'a> TensorPlaces<'a> {
    /// Finds and shape-checks every tensor the config needs (the parser has checked that each
    /// lies inside the file).
    pub fn from_gguf(file: &'a GgufFile, cfg: &ModelConfig) -> crate::Result<Self> {
        check_shapes(file, cfg)?;
        let get = |name: &str| -> crate::Result<TensorPlace<'a>> {
            let t = file.tensor(name).ok_or_else(|| unsupported(format!("missing tensor {name}")))?;
            let (rows, cols) = matrix_shape(&t.dims).expect("checked by check_shapes");
            let start = file.data_offset.checked_add(t.offset).ok_or_else(|| unsupported(format!("tensor {name}: offset overflows")))?;
            Ok(TensorPlace { name: &t.name, ty: t.ty, rows, cols, start, len: t.n_bytes })
        };
        let layers =
            (0..cfg.n_layers).map(|i| Layer::try_build(|role| get(&format!("blk.{i}.{}.weight", role.gguf_suffix())))).collect::<crate::Result<Vec<_>>>()?;
        Ok(Weights {
            token_embd: get(Global::TokenEmbd.gguf_name())?,
            output_norm: get(Global::OutputNorm.gguf_name())?,
            output: if cfg.tied_embeddings { None } else { Some(get(Global::Output.gguf_name())?) },
            layers,
        })
    }
}

impl<'a> ModelTensors<'a> {
    /// Finds and shape-checks every tensor the config needs, as views into `bytes` (the file).
    pub fn from_gguf(file: &'a GgufFile, bytes: &'a [u8], cfg: &ModelConfig) -> crate::Result<Self> {
        TensorPlaces::from_gguf(file, cfg)?.map(|_, p| {
            let data = usize::try_from(p.start)
                .ok()
                .zip(usize::try_from(p.end()).ok())
                .and_then(|(s, e)| bytes.get(s..e))
                .ok_or_else(|| Error::InvalidArgument(format!("tensor {} lies outside the {}-byte buffer given", p.name, bytes.len())))?;
            Ok(p.view(data))
        })
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
    let (d, v) = (cfg.dim, cfg.n_vocab);
    let mut out = vec![(Global::TokenEmbd.gguf_name().to_string(), v, d, false), (Global::OutputNorm.gguf_name().to_string(), 1, d, true)];
    if !cfg.tied_embeddings {
        out.push((Global::Output.gguf_name().to_string(), v, d, false));
    }
    for i in 0..cfg.n_layers {
        for role in Role::ALL {
            let (rows, cols) = role.shape(cfg);
            out.push((format!("blk.{i}.{}.weight", role.gguf_suffix()), rows, cols, role.is_norm()));
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
            return Err(unsupported(format!("tensor {name} has dims {:?}, expected [{cols}, {rows}] from the metadata", t.dims)));
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
