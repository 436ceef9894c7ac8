//! The scale searches of ggml's K-quant reference quantisers (`make_qx_quants`,
//! `make_q3_quants`, `make_qkx2_quants` in ggml-quants.c, without an importance matrix), written
//! so that every float operation happens in the same order and precision as the C: llama.cpp's
//! files are reproduced byte for byte (tests/quant.rs checks against its library).
//! That is why sums run sequentially in f32, products are written `(w * x) * l` as C's
//! left-to-right evaluation forms them, nothing is fused, and rounding is ggml's `nearest_int`.

/// Below this, a group is all zeros (ggml's GROUP_MAX_EPS).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5 * 2^23 leaves the rounded integer (half to even) in the low
/// mantissa bits. Reproduced bit for bit, including what it returns outside its intended range
/// (|v| > 2^22, NaN), so that even degenerate inputs quantise as llama.cpp's do.
pub(super) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// The signed value of largest magnitude (the first one on ties), and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// make_qx_quants with rmse_type 1 (weights x², no importance matrix), as Q6_K uses it: a
/// symmetric scale for quants in -nmax..nmax-1, the best of 19 candidate scales around
/// `max / -nmax` by weighted least squares. `levels` receives quant + nmax; returns the scale.
pub(super) fn symmetric_scale(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Weighted sums for one candidate inverse scale: (Σ w·x·l, Σ w·l²) with w = x².
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let (l, w) = (quant(iscale, v) as f32, v * v);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let set_levels = |iscale: f32, levels: &mut [u8]| {
        for (o, &v) in levels.iter_mut().zip(x) {
            *o = (quant(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set_levels(iscale, levels);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_levels(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// make_q3_quants with do_rmse (Q3_K): quants in -nmax..nmax-1 from `max / -nmax`, then up to
/// five passes that move single quants while that improves the weighted (x²) least-squares fit.
/// `levels` receives quant + nmax; returns the scale.
pub(super) fn symmetric_scale_refined(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let l = &mut l[..x.len()];
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *li as f32;
        suml2 += w * *li as f32 * *li as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            // The fit without this element; its best quant given the rest.
            let mut slx = sumlx - w * v * *li as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * *li as f32 * *li as f32;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (o, &li) in levels.iter_mut().zip(l.iter()) {
        *o = (li + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The grid of make_qkx2_quants: candidate inverse scales (rmin + rdelta·i + nmax) / range for
/// i in 0..=steps.
#[derive(Clone, Copy)]
pub(super) struct ScaleGrid {
    pub rmin: f32,
    pub rdelta: f32,
    pub steps: i32,
    /// Absolute error (Q2_K) rather than squared error (Q4_K, Q5_K).
    pub use_mad: bool,
}

/// make_qkx2_quants: an affine fit x ≈ scale·l - min with quants l in 0..=nmax, min ≤ 0 so the
/// offset is a non-negative `min` to subtract; starting from the range, each grid step's quants
/// get a weighted least-squares scale and offset, kept if its weighted error is lower.
/// `levels` receives the quants; returns (scale, min).
pub(super) fn affine_scale(x: &[f32], weights: &[f32], nmax: i32, grid: &ScaleGrid, levels: &mut [u8]) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let error = |scale: f32, min: f32, levels: &[u8]| {
        let mut e = 0f32;
        for ((&l, &v), &w) in levels.iter().zip(x).zip(weights) {
            let diff = scale * l as f32 + min - v;
            e += w * if grid.use_mad { diff.abs() } else { diff * diff };
        }
        e
    };
    let quantise = |iscale: f32, min: f32, levels: &mut [u8]| {
        for (o, &v) in levels.iter_mut().zip(x) {
            *o = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
        }
    };
    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    quantise(iscale, min, levels);
    let mut best_error = error(scale, min, levels);
    let mut trial = [0u8; 32];
    let trial = &mut trial[..x.len()];
    for step in 0..=grid.steps {
        let iscale = (grid.rmin + grid.rdelta * step as f32 + nmax as f32) / (max - min);
        quantise(iscale, min, trial);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for ((&l, &v), &w) in trial.iter().zip(x).zip(weights) {
            let l = l as f32;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let e = error(this_scale, this_min, trial);
            if e < best_error {
                levels.copy_from_slice(trial);
                best_error = e;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}
