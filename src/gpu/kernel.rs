//! The kernels: WGSL files under `shaders/` (one per family; the product kernel's two paths in
//! files of their own), compiled after a prelude generated here from the Rust definitions the
//! shaders share (the `Step` uniform, the weight-type codes, each family's fixed sizes), so
//! nothing of the Rust/WGSL contract is mirrored by hand.

use super::StepParams;
use crate::quant::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Token embedding gather from a (quantised) table of this type.
    Embed(GgmlType),
    /// Matrix-vector (decode) and token-tile (prefill) products with a weight of this type, with
    /// the RMSNorm of the input, the residual add, SwiGLU or RoPE + KV-cache write fused
    /// (shaders/matvec.wgsl; see ops::matvec).
    Matvec(GgmlType),
    /// GQA causal attention over the KV cache with a running-max softmax (ops::attention).
    Attention,
    /// Repetition penalty, temperature and top-k candidate selection over the logits.
    TopK,
}

/// How the device compiles kernels: these change the prelude, so they are fixed per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShaderFeatures {
    /// `enable f16;` and `act_t = f16` (the adapter has shader-f16 and the precision allows it).
    pub f16: bool,
    /// The device was created with subgroup operations: the prelude defines `lanes_sum` with
    /// `subgroupShuffleXor` (kernels use it only when told to by an override constant).
    pub subgroups: bool,
}

/// The code each weight type has in WGSL (`WTYPE`, compared with the generated `WT_*` constants):
/// ggml's own type id.
pub fn weight_type_code(ty: GgmlType) -> u32 {
    ty.id()
}

/// `const NAME: u32 = V;` lines: the generated part of the prelude, shared by Rust and WGSL.
fn const_lines(out: &mut String, consts: &[(&str, u32)]) {
    for (name, value) in consts {
        out.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
}

/// Sums `v` over the `lanes` consecutive invocations of a row group (a power of two no larger
/// than the subgroup), leaving the total in every one of them.
const SUBGROUP_LANES_SUM: &str = "
fn lanes_sum(v: vec4<f32>, lanes: u32) -> vec4<f32> {
    var s = v;
    for (var o = lanes / 2u; o > 0u; o >>= 1u) {
        s += subgroupShuffleXor(s, o);
    }
    return s;
}
";

/// The same signature without subgroups: never called (kernels reduce through workgroup memory
/// then), but defined so that one kernel text serves both devices.
const NO_SUBGROUP_LANES_SUM: &str = "
fn lanes_sum(v: vec4<f32>, lanes: u32) -> vec4<f32> {
    return v;
}
";

impl Kernel {
    /// The family's WGSL files, in order (the product kernel is split by path).
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Kernel::Embed(_) => &[include_str!("../../shaders/embed.wgsl")],
            Kernel::Matvec(_) => {
                &[include_str!("../../shaders/matvec.wgsl"), include_str!("../../shaders/matvec_decode.wgsl"), include_str!("../../shaders/matvec_tiles.wgsl")]
            }
            Kernel::Attention => &[include_str!("../../shaders/attention.wgsl")],
            Kernel::TopK => &[include_str!("../../shaders/topk.wgsl")],
        }
    }

    /// Fixed sizes of this family that Rust needs too (workgroup sizes, tile lengths), emitted as
    /// WGSL constants from the Rust values.
    fn constants(self) -> Vec<(&'static str, u32)> {
        match self {
            Kernel::Embed(_) => super::ops::embed::wgsl_constants(),
            Kernel::Matvec(_) => super::ops::matvec::wgsl_constants(),
            Kernel::Attention => super::ops::attention::wgsl_constants(),
            Kernel::TopK => super::ops::topk::wgsl_constants(),
        }
    }

    /// The weight type of the kernels that read weights.
    fn weight_type(self) -> Option<GgmlType> {
        match self {
            Kernel::Embed(ty) | Kernel::Matvec(ty) => Some(ty),
            Kernel::Attention | Kernel::TopK => None,
        }
    }

    /// Full source: the generated prelude, for the kernels that read weights the decoder of their
    /// type (weights.wgsl, weights_kquant.wgsl, bound to the type by weights::decoder_wgsl), then
    /// the family's files.
    pub fn source(self, features: ShaderFeatures) -> String {
        let mut s = String::new();
        if features.f16 {
            s.push_str("enable f16;\nalias act_t = f16;\nconst ACT_F16: bool = true;\n");
        } else {
            s.push_str("alias act_t = f32;\nconst ACT_F16: bool = false;\n");
        }
        s.push_str(StepParams::WGSL);
        let codes: Vec<(String, u32)> = GgmlType::ALL.iter().map(|&t| (format!("WT_{}", t.name()), weight_type_code(t))).collect();
        const_lines(&mut s, &codes.iter().map(|(n, v)| (n.as_str(), *v)).collect::<Vec<_>>());
        const_lines(&mut s, &self.constants());
        s.push_str(if features.subgroups { SUBGROUP_LANES_SUM } else { NO_SUBGROUP_LANES_SUM });
        if let Some(ty) = self.weight_type() {
            s.push_str(&super::weights::decoder_wgsl(ty));
            s.push_str(include_str!("../../shaders/weights.wgsl"));
            s.push('\n');
            s.push_str(include_str!("../../shaders/weights_kquant.wgsl"));
            s.push('\n');
        }
        for file in self.files() {
            s.push_str(file);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_parses_with_naga_on_both_preludes() {
        let weight_kernels = GgmlType::ALL.into_iter().flat_map(|ty| [Kernel::Embed(ty), Kernel::Matvec(ty)]);
        for kernel in weight_kernels.chain([Kernel::Attention, Kernel::TopK]) {
            for f16 in [false, true] {
                for subgroups in [false, true] {
                    let src = kernel.source(ShaderFeatures { f16, subgroups });
                    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{kernel:?}: {}", e.emit_to_string(&src)));
                    let caps = naga::valid::Capabilities::all();
                    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
                    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
                    v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
                    v.validate(&module).unwrap_or_else(|e| panic!("{kernel:?} f16={f16} subgroups={subgroups}: {}", e.emit_to_string(&src)));
                }
            }
        }
    }
}
