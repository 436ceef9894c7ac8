//! What a conversion writes, tensor by tensor: one type for every matrix, or llama.cpp's Q4_K_M
//! mix (`llama_tensor_get_type` in llama.cpp's src/llama-quant.cpp, the release node-llama-cpp
//! 3.22.1 ships; tests/convert_models.rs compares our files with its `llama_model_quantize`).
//!
//! Q4_K_M, for Llama models without an importance matrix:
//! - base type Q4_K;
//! - attn_v and ffn_down: Q6_K on the layers `use_more_bits` picks (the first and last eighth,
//!   and every third layer between), Q4_K on the others;
//! - the output matrix, or token_embd when the embedding is tied: Q6_K, or Q8_0 when its rows
//!   are not whole 256-element super-blocks (llama.cpp decides this before any fallback);
//! - a row that is not whole 256-element super-blocks falls back to a 32-element type (Q4_K ->
//!   Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and to F16 if it is not whole 32-element blocks either.
//!   SmolLM2-135M and MobileLLM-125M (width 576) take the fallbacks for every matrix but
//!   ffn_down (rows of 1536).
//!
//! Norm vectors stay F32 in every case, as llama.cpp keeps them.

use crate::quant::GgmlType;

/// The GGUF a conversion writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// Every matrix in this type (F16 where a row is not a whole number of its blocks).
    Uniform(GgmlType),
    /// llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M mix.
    Q4KM,
}

impl From<GgmlType> for OutputType {
    fn from(ty: GgmlType) -> Self {
        OutputType::Uniform(ty)
    }
}

impl std::fmt::Display for OutputType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The model facts the Q4_K_M rules depend on.
#[derive(Debug, Clone, Copy)]
pub(super) struct MixModel {
    pub n_layers: usize,
    /// No output.weight: token_embd is also the output matrix.
    pub tied: bool,
}

impl OutputType {
    /// The types a conversion may write, by the names the CLI and the browser use: `f32`, `f16`,
    /// `q8_0`, `q4_0`, `q4_1`, `q4_k_m` (any case). BF16 is a source format only.
    pub fn parse(name: &str) -> Option<OutputType> {
        if name.eq_ignore_ascii_case("q4_k_m") {
            return Some(OutputType::Q4KM);
        }
        GgmlType::parse_name(name).filter(|t| matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1)).map(Into::into)
    }

    /// "Q8_0", "Q4_K_M".
    pub fn name(self) -> &'static str {
        match self {
            OutputType::Uniform(ty) => ty.name(),
            OutputType::Q4KM => "Q4_K_M",
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*).
    pub(super) fn file_type(self) -> u32 {
        match self {
            OutputType::Q4KM => 15,
            OutputType::Uniform(ty) => match ty {
                GgmlType::F32 => 0,
                GgmlType::F16 => 1,
                GgmlType::Q4_0 => 2,
                GgmlType::Q4_1 => 3,
                GgmlType::Q8_0 => 7,
                GgmlType::Q5_0 => 8,
                GgmlType::Q5_1 => 9,
                GgmlType::Q2_K => 10,
                GgmlType::Q3_K => 12,
                GgmlType::Q4_K => 14,
                GgmlType::Q5_K => 16,
                GgmlType::Q6_K => 18,
                GgmlType::BF16 => 32,
            },
        }
    }

    /// Whether the file holds quantised blocks (it then carries `general.quantization_version`).
    pub(super) fn is_quantised(self) -> bool {
        match self {
            OutputType::Uniform(ty) => !ty.is_float(),
            OutputType::Q4KM => true,
        }
    }

    /// The type of the tensor `name` with PyTorch shape `shape` ([rows, cols] or [n]).
    pub(super) fn tensor_type(self, name: &str, shape: &[u64], model: MixModel) -> GgmlType {
        let &[_, cols] = shape else { return GgmlType::F32 };
        match self {
            OutputType::Uniform(ty) => fits_or_f16(ty, cols),
            OutputType::Q4KM => q4_k_m_type(name, cols, model),
        }
    }
}

fn fits_or_f16(ty: GgmlType, cols: u64) -> GgmlType {
    if cols.is_multiple_of(ty.block_len() as u64) {
        ty
    } else {
        GgmlType::F16
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one
/// between them.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2
}

/// `blk.N.` -> N.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

fn q4_k_m_type(name: &str, cols: u64, model: MixModel) -> GgmlType {
    let is_output = name == "output.weight" || (model.tied && name == "token_embd.weight");
    let wanted = if is_output {
        if cols.is_multiple_of(GgmlType::Q4_K.block_len() as u64) {
            GgmlType::Q6_K
        } else {
            GgmlType::Q8_0
        }
    } else if name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight") {
        match layer_of(name) {
            Some(layer) if use_more_bits(layer, model.n_layers) => GgmlType::Q6_K,
            _ => GgmlType::Q4_K,
        }
    } else {
        GgmlType::Q4_K
    };
    if cols.is_multiple_of(wanted.block_len() as u64) {
        return wanted;
    }
    // llama.cpp's tensor_type_fallback, for the types the mix picks.
    let smaller = match wanted {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    fits_or_f16(smaller, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        // SmolLM2-135M's 30 layers: 0-2, 26-29, and 5, 8, ..., 23.
        let picked: Vec<usize> = (0..30).filter(|&l| use_more_bits(l, 30)).collect();
        assert_eq!(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        let eight: Vec<usize> = (0..8).filter(|&l| use_more_bits(l, 8)).collect();
        assert_eq!(eight, [0, 3, 6, 7]);
    }

    #[test]
    fn smollm2_shapes_take_the_fallbacks() {
        let m = MixModel { n_layers: 30, tied: true };
        let t = |name: &str, rows: u64, cols: u64| OutputType::Q4KM.tensor_type(name, &[rows, cols], m);
        assert_eq!(t("token_embd.weight", 49152, 576), GgmlType::Q8_0);
        assert_eq!(t("blk.0.attn_q.weight", 576, 576), GgmlType::Q5_0);
        assert_eq!(t("blk.0.attn_v.weight", 192, 576), GgmlType::Q8_0);
        assert_eq!(t("blk.3.attn_v.weight", 192, 576), GgmlType::Q5_0);
        assert_eq!(t("blk.0.ffn_down.weight", 576, 1536), GgmlType::Q6_K);
        assert_eq!(t("blk.3.ffn_down.weight", 576, 1536), GgmlType::Q4_K);
        assert_eq!(OutputType::Q4KM.tensor_type("blk.3.attn_norm.weight", &[576], m), GgmlType::F32);
    }

    #[test]
    fn whole_super_blocks_keep_the_k_quants() {
        let m = MixModel { n_layers: 8, tied: false };
        let t = |name: &str, cols: u64| OutputType::Q4KM.tensor_type(name, &[512, cols], m);
        assert_eq!(t("output.weight", 256), GgmlType::Q6_K);
        assert_eq!(t("token_embd.weight", 256), GgmlType::Q4_K, "untied: an ordinary matrix");
        assert_eq!(t("blk.6.attn_v.weight", 256), GgmlType::Q6_K);
        assert_eq!(t("blk.5.attn_v.weight", 256), GgmlType::Q4_K);
        assert_eq!(t("blk.7.ffn_down.weight", 512), GgmlType::Q6_K);
        assert_eq!(t("blk.1.attn_output.weight", 256), GgmlType::Q4_K);
        // Rows of 80: not whole 32-element blocks either.
        assert_eq!(t("blk.1.ffn_down.weight", 80), GgmlType::F16);
        assert_eq!(t("output.weight", 80), GgmlType::F16);
    }
}
