//! Portable transcendental functions: the same IEEE operations in the same order on every target,
//! so native and wasm results agree bit for bit (libm's exp/log/sin differ between glibc and the
//! Rust wasm libm in the last bit). No fused multiply-add anywhere: Rust never contracts a*b+c.

/// Cephes expf's minimax polynomial for e^r - 1 - r on |r| <= ln2/2 (about 1 ulp overall).
#[allow(clippy::excessive_precision)] // the published coefficients, rounded to f32 by the compiler
pub(crate) const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = C1 + C2 with C1 exact in 9 bits, so n*C1 is exact for |n| < 2^15 (Cody-Waite).
#[allow(clippy::excessive_precision)] // written out exactly: 355/512
pub(crate) const LN2_HI: f32 = 0.693_359_375;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Below EXP_LO the result is 0: every nonzero result is a normal number (subnormal arithmetic
/// costs ~100 cycles per operation on x86, and e^-87 = 1.6e-38 is nothing next to the sums these
/// values enter). Above EXP_HI inputs are clamped, and exp(89) overflows to +inf.
pub(crate) const EXP_LO: f32 = -87.0;
pub(crate) const EXP_HI: f32 = 89.0;

/// e^x in f32 (<= 1 ulp from e^x measured; 0 below -87). The SIMD versions (avx2.rs, wasm.rs)
/// perform exactly these operations: 0 if x < EXP_LO, else clamp to EXP_HI (NaN passes
/// through), n = round_even(x*log2e), r = (x - n*C1) - n*C2, p = Horner(EXP_P, r),
/// e = (p*(r*r) + r) + 1, result = (e * 2^(n>>1)) * 2^(n - (n>>1)) (two factors so that
/// 2^128 = e^88.7.. needs no infinite factor).
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    if x < EXP_LO {
        return 0.0;
    }
    let x = if x > EXP_HI { EXP_HI } else { x };
    let n = round_even(x * LOG2E);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p * r + c;
    }
    let e = (p * (r * r) + r) + 1.0;
    let ni = n as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    e * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

/// xs[i] = exp(xs[i] - m) with a chosen instruction set's kernel (all give the same bits).
pub fn exp_sub_with(isa: super::Isa, xs: &mut [f32], m: f32) {
    assert!(super::Isa::available().contains(&isa), "{isa:?} is not available here");
    super::dispatch::exp_sub(isa, xs, m)
}

/// 1.5 * 2^23: adding and subtracting it rounds |v| < 2^22 to an integer, ties to even (the
/// default IEEE rounding), in two plain additions on every target (`round_ties_even` is a libm
/// call on baseline x86_64).
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

/// Round to the nearest integer, ties to even, for |v| < 2^22.
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// silu(x) = x / (1 + e^-x), as cpu::ops::silu but with the portable exp.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// e^x in f64 (one-off uses: the RoPE table, the log-sum-exp's chunk combination).
/// n = round(x/ln2), r by a two-part ln2, Taylor series to degree 14 (|r| <= 0.35: < 1e-17).
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.8 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    #[allow(clippy::excessive_precision)]
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1; // 32 significant bits
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let n = (x * std::f64::consts::LOG2_E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=14 {
        term = term * r / k as f64;
        sum += term;
    }
    let ni = n as i64;
    let n1 = ni / 2;
    let n2 = ni - n1;
    sum * f64::from_bits(((n1 + 1023) as u64) << 52) * f64::from_bits(((n2 + 1023) as u64) << 52)
}

/// ln(x) in f64: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m-1)/(m+1)).
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= 2f64.powi(64); // exact
        e -= 64;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let mut term = f;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / (2 * k + 1) as f64;
        term *= f2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// (sin x, cos x) in f64 for |x| up to ~1e6 (RoPE angles): x = k*pi/2 + r with a three-part
/// pi/2 (the first two parts have 33 bits, so k*part is exact for k < 2^20), Taylor on |r|<=pi/4.
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    const PIO2_1: f64 = 1.570_796_326_734_125_6;
    const PIO2_2: f64 = 6.077_100_506_303_966e-11;
    const PIO2_3: f64 = 2.022_266_248_795_950_6e-21;
    let k = (x * std::f64::consts::FRAC_2_PI).round_ties_even();
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for i in 0..10 {
        s += ts;
        c += tc;
        let (a, b) = ((2 * i + 2) as f64, (2 * i + 3) as f64);
        ts = -ts * r2 / (a * b);
        tc = -tc * r2 / ((2 * i + 1) as f64 * a);
    }
    match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// IEEE f16 -> f32 (exact).
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 -> IEEE f16, round to nearest even.
#[inline]
pub fn f32_to_f16(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

/// A key whose unsigned order is f32::total_cmp's order (-0 below +0, NaN at the ends).
#[inline]
pub fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}
