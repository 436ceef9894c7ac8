//! Activations prepared once per product input and shared by every product that reads them.
//!
//! Quantised weights (every block type) are multiplied with 15-bit integer activations: each row
//! is cut into blocks of 32 (the classic types' block, an eighth of a K-quant super-block),
//! d = amax / 16383, q = round-half-even(x * 16383
//! / amax). 15 bits (not 16) so that the relaxed-SIMD build can split q into a signed byte and a
//! 7-bit byte (q = 128*hi + lo) and still compute the same integers as every other build. The
//! per-element error (amax/32766) is 128x smaller than llama.cpp's 8-bit activations: the products
//! are as accurate as f32 for choosing tokens. Float weights use the f32 rows as they are.
//!
//! Everything here is plain scalar code shared by all builds, so the quantised activations (and
//! therefore the integer dot products) are the same on every target.

/// Quantisation levels of the activations: |q| <= QMAX.
pub(crate) const QMAX: f32 = 16383.0;

#[derive(Default)]
pub struct Acts {
    pub(crate) tokens: usize,
    pub(crate) cols: usize,
    /// [T, cols] the input as given (float weights).
    pub(crate) x: Vec<f32>,
    /// [T, cols] quantised, natural order (scalar, AVX2).
    pub(crate) q: Vec<i16>,
    /// [T, nb] per-block scale d and d * sum(q) (the Q4_1 min term), and sum(q) (Q4_0's -8).
    pub(crate) d: Vec<f32>,
    pub(crate) sx: Vec<f32>,
    pub(crate) sum: Vec<i32>,
    /// [T, nb] sum(q) of the first 16 elements of each block: the K-quants with a scale per 16
    /// elements need each half's sum (the second half's is sum - sum16).
    pub(crate) sum16: Vec<i32>,
    /// [T, cols] x86_64: q per block in the order in which the AVX2 kernels of the Q5 and K-quant
    /// types widen 32 weight bytes to i16 (unpacklo/hi_epi8, per 128-bit lane): elements
    /// [0..8, 16..24] then [8..16, 24..32]. Each 128-bit lane then holds one 16-element half.
    #[cfg(target_arch = "x86_64")]
    pub(crate) qx: Vec<i16>,
    /// [T, cols] q in the order the wasm kernels unpack weights: per block the even then the odd
    /// elements of 0..16, then the even and the odd elements of 16..32 (see wasm.rs).
    #[cfg(target_arch = "wasm32")]
    pub(crate) qp: Vec<i16>,
    /// Relaxed SIMD, per block of 32: Q4 operands [hi(32) i8, lo(32) 0..127] with q = 128*hi+lo;
    /// Q8_0 operands [b(32), c(32), na(32)] all 0..127 with q = 128*b + c - 16384*na.
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    pub(crate) r4: Vec<i8>,
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    pub(crate) r8: Vec<u8>,
}

impl Acts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// True when the rows were also quantised (cols a multiple of 32), i.e. quantised weights can
    /// use these activations.
    pub fn quantised(&self) -> bool {
        self.cols.is_multiple_of(32) && self.q.len() == self.tokens * self.cols
    }

    /// x: [tokens, cols]. Buffers are reused between calls (no allocation once grown).
    pub fn prepare(&mut self, x: &[f32], tokens: usize, cols: usize) {
        assert_eq!(x.len(), tokens * cols, "Acts::prepare: x is not [tokens, cols]");
        self.tokens = tokens;
        self.cols = cols;
        self.x.clear();
        self.x.extend_from_slice(x);
        self.q.clear();
        self.d.clear();
        self.sx.clear();
        self.sum.clear();
        self.sum16.clear();
        #[cfg(target_arch = "x86_64")]
        self.qx.clear();
        #[cfg(target_arch = "wasm32")]
        self.qp.clear();
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        {
            self.r4.clear();
            self.r8.clear();
        }
        if !cols.is_multiple_of(32) {
            return;
        }
        for blk in x.chunks_exact(32) {
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (d, id) = if amax > 0.0 && amax.is_finite() { (amax / QMAX, QMAX / amax) } else { (0.0, 0.0) };
            let mut q = [0i16; 32];
            let mut sum = 0i32;
            for (o, &v) in q.iter_mut().zip(blk) {
                // `as` saturates (and maps NaN to 0); the clamp is only a guard against rounding.
                *o = (super::math::round_even(v * id) as i32).clamp(-16383, 16383) as i16;
                sum += *o as i32;
            }
            self.q.extend_from_slice(&q);
            self.d.push(d);
            self.sum.push(sum);
            self.sum16.push(q[..16].iter().map(|&v| v as i32).sum());
            self.sx.push(d * sum as f32);
            #[cfg(target_arch = "x86_64")]
            for r in [0..8, 16..24, 8..16, 24..32] {
                self.qx.extend_from_slice(&q[r]);
            }
            #[cfg(target_arch = "wasm32")]
            {
                for h in [0, 16] {
                    self.qp.extend((0..8).map(|i| q[h + 2 * i]));
                    self.qp.extend((0..8).map(|i| q[h + 2 * i + 1]));
                }
            }
            #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
            {
                self.r4.extend(q.iter().map(|&v| (v >> 7) as i8));
                self.r4.extend(q.iter().map(|&v| (v & 127) as i8));
                let u = q.map(|v| (v as i32 + 16384) as u32);
                self.r8.extend(u.iter().map(|&u| ((u >> 7) & 127) as u8));
                self.r8.extend(u.iter().map(|&u| (u & 127) as u8));
                self.r8.extend(u.iter().map(|&u| (1 - (u >> 14)) as u8));
            }
        }
    }
}
