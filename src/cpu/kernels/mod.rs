//! CPU backend kernels: quantised and float matrix products, fused SwiGLU, RMSNorm, RoPE, causal
//! GQA attention over an f32/f16 KV cache, top-k sampling candidates, and a thread pool.
//!
//! Determinism is the first rule: every result is bit-identical whatever the thread count (each
//! output is computed by one thread, in a fixed order) and whatever the instruction set (scalar,
//! AVX2, wasm simd128, wasm relaxed-simd all perform the same canonical arithmetic), so the
//! browser's greedy tokens equal the native CLI's. The canonical arithmetic is written out once in
//! scalar.rs; the SIMD files mirror it. In short:
//! - quantised weights x 15-bit activations (acts.rs): per block of 32 an exact integer dot
//!   `isum`, then per row and token `acc = acc + (d_w*d_x)*isum` (+ `m_w*(d_x*sum_x)` for Q4_1,
//!   as a second addition), blocks in order; the Q5 types and the K-quants the same way per
//!   32-element piece, with their integer sub-block scales inside isum and their mins as a
//!   second term (kquant_scalar.rs);
//! - float weights x f32 activations: element c goes to lane c%16, each lane `l = l + w*x` in
//!   order, then the fixed tree ((l[i]+l[i+8]) + (l[i+4]+l[i+12])) ... (`reduce16`);
//! - no FMA, no libm: exp/log/sin/cos are portable (math.rs).
//!
//! One decode step of a layer, as the engine calls it (5 parallel regions):
//! ```text
//! rmsnorm(x, attn_norm, eps, n);  acts.prepare(&n, T, dim);
//! matmul(pool, &acts, &mut [q(Store), k(Store), v(Store)]);          // one region
//! rope.apply(q_t, n_heads, pos); rope.apply(k_t, n_kv_heads, pos); cache.write(pos, k_t, v_t);
//! attention(pool, &q, &cache, pos0, T, n_heads, n_kv_heads, hd, &mut att);
//! acts.prepare(&att, T, q_dim);  matmul(pool, &acts, &mut [o(Accumulate into x)]);
//! rmsnorm(x, ffn_norm, eps, n);  acts.prepare(&n, T, dim);
//! matmul_swiglu(pool, &acts, gate, up, &mut h);
//! acts.prepare(&h, T, ffn);      matmul(pool, &acts, &mut [down(Accumulate into x)]);
//! ```
//! Weights are GGUF bytes as stored (`QMatrix`), never repacked; one `Acts` per input serves every
//! product of that input. Natively `Pool::new(n)` spawns threads; in the browser use
//! `Pool::new_external(n)` and run `worker_loop` in n-1 Web Workers. `selftest()` checks a build.

mod acts;
mod attention;
mod kquant_scalar;
pub mod math;
mod matmul;
mod norm;
mod pool;
mod scalar;
mod selftest;
mod topk;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod kquant_avx2;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod kquant_wasm;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
mod relaxed;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;

pub use acts::Acts;
pub use attention::{attention, attention_with, KvCache, KvType};
pub use matmul::{matmul, matmul_swiglu, matmul_swiglu_with, matmul_with};
pub use norm::{rmsnorm, Rope};
pub use pool::{worker_loop, Pool, Shared};
pub use selftest::{selftest, selftest_pool};
pub use topk::{top_candidates, top_candidates_with};

pub use crate::quant::GgmlType;
pub use crate::sampler::Candidate;

/// GGUF bytes of a whole [rows, cols] tensor in file layout (no repacking; may be unaligned).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl QMatrix<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_len() * self.ty.block_bytes()
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Row r dequantised into out (bit-exact with quant::dequantize): the embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "dequantize_row: out is not [cols]");
        let v = crate::quant::dequantize(self.ty, self.row(r), self.cols).expect("a whole row of blocks");
        out.copy_from_slice(&v);
    }

    /// Every block type (classic, Q5, K-quant) takes the quantised-activation path.
    pub(crate) fn is_quantised(&self) -> bool {
        !self.ty.is_float()
    }

    fn check(&self) {
        assert!(self.cols.is_multiple_of(self.ty.block_len()), "{}: {} columns are not whole blocks", self.ty.name(), self.cols);
        assert_eq!(self.data.len(), self.rows * self.row_bytes(), "{} [{}, {}]: wrong byte length", self.ty.name(), self.rows, self.cols);
    }
}

/// What a product does with its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// out = W·x
    Store,
    /// out += W·x (the residual add, fused)
    Accumulate,
}

/// One product of a [`matmul`] call: out[t, r] (= or +=) w[r]·x[t]; out: [tokens, w.rows].
pub struct Product<'a> {
    pub w: QMatrix<'a>,
    pub out: &'a mut [f32],
    pub epilogue: Epilogue,
}

/// The instruction set a kernel runs with. All of them compute bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// x86_64 AVX2 + F16C, chosen at run time.
    Avx2,
    /// wasm simd128 (compiled in with `-C target-feature=+simd128`).
    Simd128,
    /// wasm relaxed-simd dot products (cargo feature `relaxed-simd`, on top of simd128).
    Relaxed,
}

impl Isa {
    /// The fastest instruction set this build can use on this machine.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static BEST: OnceLock<Isa> = OnceLock::new();
            *BEST.get_or_init(|| if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") { Isa::Avx2 } else { Isa::Scalar })
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
        {
            Isa::Relaxed
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "relaxed-simd")))]
        {
            Isa::Simd128
        }
        #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
        {
            Isa::Scalar
        }
    }

    /// Every instruction set usable here, scalar first (for the equality tests).
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        match Isa::best() {
            Isa::Scalar => {}
            Isa::Relaxed => v.extend([Isa::Simd128, Isa::Relaxed]),
            other => v.push(other),
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Simd128 => "simd128",
            Isa::Relaxed => "relaxed",
        }
    }
}

/// Float kernels (dot, axpy, exp) of an instruction set; the relaxed build's float kernels are
/// the simd128 ones.
pub(crate) mod dispatch {
    use super::{scalar, GgmlType, Isa};

    #[inline]
    pub fn dot(isa: Isa, ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { super::avx2::dot(ty, w, x) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 | Isa::Relaxed => super::wasm::dot(ty, w, x),
            _ => scalar::dot(ty, w, x),
        }
    }

    /// acc[i] = acc[i] + a * v[i]
    #[inline]
    pub fn axpy(isa: Isa, ty: GgmlType, a: f32, v: &[u8], acc: &mut [f32]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { super::avx2::axpy(ty, a, v, acc) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 | Isa::Relaxed => super::wasm::axpy(ty, a, v, acc),
            _ => scalar::axpy(ty, a, v, acc),
        }
    }

    /// xs[i] = exp(xs[i] - m)
    #[inline]
    pub fn exp_sub(isa: Isa, xs: &mut [f32], m: f32) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { super::avx2::exp_sub(xs, m) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 | Isa::Relaxed => super::wasm::exp_sub(xs, m),
            _ => scalar::exp_sub(xs, m),
        }
    }
}
