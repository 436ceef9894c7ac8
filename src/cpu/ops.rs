//! The reference building blocks, plain f32 with f64 accumulation. Kernel tests compare each
//! WGSL kernel with the function of the same name here.

/// x / sqrt(mean(x²) + eps) * w, for one row.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (ms + eps as f64).sqrt();
    x.iter().zip(w).map(|(&v, &g)| (v as f64 * scale) as f32 * g).collect()
}

/// y[t, r] = sum_c x[t, c] * w[r, c]; x: [T, cols], w: [rows, cols] -> y: [T, rows].
pub fn matmul(x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let t = x.len() / cols;
    let mut y = vec![0f32; t * rows];
    for i in 0..t {
        let xi = &x[i * cols..(i + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            y[i * rows + r] = xi.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32;
        }
    }
    y
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// silu(gate) * up, elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| silu(g) * u).collect()
}

/// llama ("normal") RoPE in place on one token's heads: pairs (2i, 2i+1) of each head rotate by
/// pos * base^(-2i/head_dim).
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize, base: f32) {
    for h in 0..n_heads {
        let v = &mut x[h * head_dim..(h + 1) * head_dim];
        for i in 0..head_dim / 2 {
            let theta = pos as f64 * (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
            let (s, c) = theta.sin_cos();
            let (a, b) = (v[2 * i] as f64, v[2 * i + 1] as f64);
            v[2 * i] = (a * c - b * s) as f32;
            v[2 * i + 1] = (a * s + b * c) as f32;
        }
    }
}

/// Causal GQA attention of one query token over `len` cached positions.
/// q: [n_heads*hd]; k_cache, v_cache: [>= len, n_kv_heads*hd] -> [n_heads*hd].
pub fn attention(q: &[f32], k_cache: &[f32], v_cache: &[f32], len: usize, n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Vec<f32> {
    let group = n_heads / n_kv_heads;
    let kv_dim = n_kv_heads * head_dim;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![0f32; n_heads * head_dim];
    for h in 0..n_heads {
        let kvh = h / group;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let scores: Vec<f64> = (0..len)
            .map(|p| {
                let k = &k_cache[p * kv_dim + kvh * head_dim..][..head_dim];
                qh.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = weights.iter().sum();
        for d in 0..head_dim {
            let acc: f64 = (0..len).map(|p| weights[p] * v_cache[p * kv_dim + kvh * head_dim + d] as f64).sum();
            out[h * head_dim + d] = (acc / sum) as f32;
        }
    }
    out
}

/// [`matmul`] with the weight rows split over `threads` scoped threads. Bit-identical to
/// [`matmul`] (every output is the same f64 dot product, summed in the same order); only the
/// loop order differs: weight rows outside, tokens inside, so each weight row is read from memory
/// once per call instead of once per token. Small products stay on the calling thread.
pub fn matmul_par(x: &[f32], w: &[f32], rows: usize, cols: usize, threads: usize) -> Vec<f32> {
    let t = x.len() / cols;
    let mut y = vec![0f32; t * rows];
    if t == 0 || rows == 0 {
        return y;
    }
    let threads = if t * rows * cols < (1 << 18) { 1 } else { threads.clamp(1, rows) };
    // Each worker fills yt: [rows_chunk, T] (transposed, so its slice is contiguous).
    let mut yt = vec![0f32; rows * t];
    let chunk = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, out) in yt.chunks_mut(chunk * t).enumerate() {
            let r0 = i * chunk;
            let mut work = move || {
                for (j, out_row) in out.chunks_mut(t).enumerate() {
                    let wr = &w[(r0 + j) * cols..(r0 + j + 1) * cols];
                    for (o, xi) in out_row.iter_mut().zip(x.chunks_exact(cols)) {
                        *o = xi.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32;
                    }
                }
            };
            if threads == 1 {
                work();
            } else {
                s.spawn(work);
            }
        }
    });
    for r in 0..rows {
        for i in 0..t {
            y[i * rows + r] = yt[r * t + i];
        }
    }
    y
}
