//! Causal GQA attention over a KV cache in f32 or f16.
//!
//! Canonical arithmetic per (token, head): score_p = dot(k_p, q) (the float dot of scalar.rs,
//! key as the "weight") * scale; m = max; w_p = exp(score_p - m) (portable exp); sum = f64 sum
//! of w_p in order; acc_d = acc_d + w_p * v_p[d] in order of p (f32); out = (acc / sum) in f64
//! rounded to f32.

use super::math::f32_to_f16;
use super::{dispatch, GgmlType, Isa, Pool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    /// IEEE half, rounded to nearest even (half the memory and bandwidth).
    F16,
}

enum Buf {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Buf {
    fn new(ty: KvType, n: usize) -> Self {
        match ty {
            KvType::F32 => Buf::F32(vec![0.0; n]),
            KvType::F16 => Buf::F16(vec![0; n]),
        }
    }

    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Buf::F32(b) => b[at..at + x.len()].copy_from_slice(x),
            Buf::F16(b) => b[at..at + x.len()].iter_mut().zip(x).for_each(|(o, &v)| *o = f32_to_f16(v)),
        }
    }

    /// Elements at..at+n as bytes.
    fn bytes(&self, at: usize, n: usize) -> &[u8] {
        match self {
            Buf::F32(b) => bytemuck::cast_slice(&b[at..at + n]),
            Buf::F16(b) => bytemuck::cast_slice(&b[at..at + n]),
        }
    }
}

/// Keys and values of one block evaluation: [n_ctx, kv_dim] each.
pub struct KvCache {
    ty: KvType,
    n_ctx: usize,
    kv_dim: usize,
    k: Buf,
    v: Buf,
}

impl KvCache {
    pub fn new(ty: KvType, n_ctx: usize, kv_dim: usize) -> Self {
        KvCache { ty, n_ctx, kv_dim, k: Buf::new(ty, n_ctx * kv_dim), v: Buf::new(ty, n_ctx * kv_dim) }
    }

    pub fn ty(&self) -> KvType {
        self.ty
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Stores position `pos`'s key and value rows ([kv_dim] each, after RoPE for the key).
    pub fn write(&mut self, pos: usize, k: &[f32], v: &[f32]) {
        assert!(pos < self.n_ctx, "KvCache: position {pos} beyond n_ctx {}", self.n_ctx);
        assert!(k.len() == self.kv_dim && v.len() == self.kv_dim, "KvCache: rows are not kv_dim");
        self.k.write(pos * self.kv_dim, k);
        self.v.write(pos * self.kv_dim, v);
    }

    /// Memory held by the keys and values.
    pub fn bytes(&self) -> usize {
        2 * self.n_ctx * self.kv_dim * if self.ty == KvType::F32 { 4 } else { 2 }
    }

    fn elem(&self) -> GgmlType {
        if self.ty == KvType::F32 {
            GgmlType::F32
        } else {
            GgmlType::F16
        }
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each (token, head) slice of the output is written by one part only.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method, so closures capture the Sync wrapper and not the raw pointer field.
    fn at(&self, i: usize) -> *mut f32 {
        unsafe { self.0.add(i) }
    }
}

/// Causal attention for `tokens` query rows at positions pos0.., each over cache positions
/// 0..=its own. q, out: [tokens, n_heads*head_dim]. Parallel over (token, head).
#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &Pool, q: &[f32], cache: &KvCache, pos0: usize, tokens: usize, n_heads: usize, n_kv_heads: usize, head_dim: usize, out: &mut [f32]) {
    attention_with(Isa::best(), pool, q, cache, pos0, tokens, n_heads, n_kv_heads, head_dim, out)
}

#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    isa: Isa,
    pool: &Pool,
    q: &[f32],
    cache: &KvCache,
    pos0: usize,
    tokens: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    assert!(Isa::available().contains(&isa), "{isa:?} is not available here");
    let qd = n_heads * head_dim;
    assert!(n_kv_heads > 0 && n_heads.is_multiple_of(n_kv_heads), "attention: {n_heads} heads over {n_kv_heads} KV heads");
    assert_eq!(n_kv_heads * head_dim, cache.kv_dim, "attention: cache rows are not n_kv_heads*head_dim");
    assert!(q.len() == tokens * qd && out.len() == tokens * qd, "attention: q/out are not [tokens, n_heads*head_dim]");
    assert!(pos0 + tokens <= cache.n_ctx, "attention: positions beyond the cache");
    let pairs = tokens * n_heads;
    // Work ~ positions * head_dim per pair; below ~16K multiply-adds a sync costs more than it saves.
    let work = (pos0 + tokens) * head_dim * pairs;
    let parts = if work < 16384 { 1 } else { (pool.threads() * 2).min(pairs) };
    let o = OutPtr(out.as_mut_ptr());
    pool.run(parts, &|p| {
        let (a, b) = (pairs * p / parts, pairs * (p + 1) / parts);
        let mut scores = Vec::with_capacity(pos0 + tokens);
        let mut acc = vec![0f32; head_dim];
        for pair in a..b {
            let (t, h) = (pair / n_heads, pair % n_heads);
            let qh = &q[t * qd + h * head_dim..][..head_dim];
            // SAFETY: pair (t, h) owns this slice of out; parts cover disjoint pairs.
            let oh = unsafe { std::slice::from_raw_parts_mut(o.at(t * qd + h * head_dim), head_dim) };
            head(isa, cache, qh, pos0 + t + 1, h / (n_heads / n_kv_heads), &mut scores, &mut acc, oh);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn head(isa: Isa, cache: &KvCache, q: &[f32], len: usize, kvh: usize, scores: &mut Vec<f32>, acc: &mut [f32], out: &mut [f32]) {
    let hd = q.len();
    let ty = cache.elem();
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    scores.clear();
    scores.extend((0..len).map(|p| dispatch::dot(isa, ty, cache.k.bytes(p * cache.kv_dim + kvh * hd, hd), q) * scale));
    let m = scores.iter().fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m });
    dispatch::exp_sub(isa, scores, m);
    let sum: f64 = scores.iter().map(|&w| w as f64).sum();
    acc.fill(0.0);
    for (p, &w) in scores.iter().enumerate() {
        dispatch::axpy(isa, ty, w, cache.v.bytes(p * cache.kv_dim + kvh * hd, hd), acc);
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = (a as f64 / sum) as f32;
    }
}
