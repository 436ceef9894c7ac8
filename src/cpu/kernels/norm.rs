//! RMSNorm and RoPE (one token row at a time; cheap next to the products, so scalar).

use super::math::sin_cos_f64;

/// out = x / sqrt(mean(x²) + eps) * w, with exactly cpu::ops::rmsnorm's operations (the sum of
/// squares in f64 in order, the scale in f64, one rounding to f32 before the gain), so the result
/// equals the reference bit for bit.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == w.len() && out.len() == x.len(), "rmsnorm: lengths differ");
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (ms + eps as f64).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v as f64 * scale) as f32 * g;
    }
}

/// llama "normal" RoPE: pairs (2i, 2i+1) of each head rotate by pos * base^(-2i/head_dim).
/// The (cos, sin) table is computed once in f64 with the portable functions of math.rs and
/// rounded to f32, so it is the same on every target.
pub struct Rope {
    head_dim: usize,
    n_ctx: usize,
    /// [n_ctx, head_dim/2] of (cos, sin)
    table: Vec<[f32; 2]>,
}

impl Rope {
    pub fn new(head_dim: usize, base: f32, n_ctx: usize) -> Self {
        assert!(head_dim.is_multiple_of(2), "Rope: odd head_dim");
        let half = head_dim / 2;
        let ln_base = super::math::ln_f64(base as f64);
        let inv_freq: Vec<f64> = (0..half).map(|i| super::math::exp_f64(-(2.0 * i as f64 / head_dim as f64) * ln_base)).collect();
        let mut table = Vec::with_capacity(n_ctx * half);
        for pos in 0..n_ctx {
            for f in &inv_freq {
                let (s, c) = sin_cos_f64(pos as f64 * f);
                table.push([c as f32, s as f32]);
            }
        }
        Rope { head_dim, n_ctx, table }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Rotates x: [n_heads * head_dim] (one token) in place for position `pos`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, pos: usize) {
        let half = self.head_dim / 2;
        assert!(pos < self.n_ctx, "Rope: position {pos} beyond the table ({})", self.n_ctx);
        assert!(x.len() >= n_heads * self.head_dim, "Rope: x is shorter than n_heads * head_dim");
        let row = &self.table[pos * half..][..half];
        for head in x[..n_heads * self.head_dim].chunks_exact_mut(self.head_dim) {
            for (pair, &[c, s]) in head.chunks_exact_mut(2).zip(row) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }
}
