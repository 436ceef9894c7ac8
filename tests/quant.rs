//! Block formats: hand-computed blocks (exact bytes and values), error bounds on random data,
//! and errors (not panics) on wrong lengths.

use mobilellm_web::quant::{dequantize, quantize, GgmlType};

fn lcg_vec(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn f16_bits(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

#[test]
fn q4_0_hand_computed_block() {
    // x[j] = j - 16: the largest magnitude is -16, so d = -16 / -8 = 2 and q = trunc(x/2 + 8.5).
    let x: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
    let q = quantize(GgmlType::Q4_0, &x).unwrap();
    assert_eq!(q.len(), 18);
    assert_eq!(f16_bits(&q), 0x4000, "d = 2.0");
    for j in 0..16usize {
        let lo = j.div_ceil(2); // trunc((j-16)/2 + 8.5) = trunc(j/2 + 0.5)
        let hi = (8 + j.div_ceil(2)).min(15); // element j+16 has x = j
        assert_eq!(q[2 + j], (lo | (hi << 4)) as u8, "byte {j}");
    }
    let y = dequantize(GgmlType::Q4_0, &q, 32).unwrap();
    for j in 0..16 {
        assert_eq!(y[j], (j.div_ceil(2) as f32 - 8.0) * 2.0);
        assert_eq!(y[j + 16], ((8 + j.div_ceil(2)).min(15) as f32 - 8.0) * 2.0);
    }
    assert_eq!(y[0], -16.0, "the extreme value is exact");
}

#[test]
fn q4_1_hand_computed_block() {
    // x = (j mod 16) + 0.25: min 0.25, max 15.25, d = 1, q = j mod 16.
    let x: Vec<f32> = (0..32).map(|j| (j % 16) as f32 + 0.25).collect();
    let q = quantize(GgmlType::Q4_1, &x).unwrap();
    assert_eq!(q.len(), 20);
    assert_eq!(f16_bits(&q[0..]), 0x3C00, "d = 1.0");
    assert_eq!(f16_bits(&q[2..]), 0x3400, "m = 0.25");
    for j in 0..16 {
        assert_eq!(q[4 + j], (j | (j << 4)) as u8);
    }
    assert_eq!(dequantize(GgmlType::Q4_1, &q, 32).unwrap(), x);

    // Hand-built bytes: d = 1, m = -1, byte 0 = 0x21 -> element 0 is 1*1-1, element 16 is 2*1-1.
    let mut b = vec![0x00, 0x3C, 0x00, 0xBC];
    b.extend_from_slice(&[0x21; 16]);
    let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
    assert_eq!((y[0], y[15], y[16], y[31]), (0.0, 0.0, 1.0, 1.0));
}

#[test]
fn q8_0_hand_computed_block_rounds_half_away_from_zero() {
    // amax = 63.5 -> d = 0.5, q = round(2x); x = 0.75 (j-16) gives halves that round away from 0.
    let mut x: Vec<f32> = (0..32).map(|j| 0.75 * (j as f32 - 16.0)).collect();
    x[0] = 63.5;
    let q = quantize(GgmlType::Q8_0, &x).unwrap();
    assert_eq!(q.len(), 34);
    assert_eq!(f16_bits(&q), 0x3800, "d = 0.5");
    assert_eq!(q[2] as i8, 127);
    for j in 1..32 {
        let t = 1.5 * (j as f32 - 16.0);
        let want = if t.fract() == 0.0 { t } else { t.signum() * (t.abs() + 0.5) };
        assert_eq!(q[2 + j] as i8 as f32, want, "element {j}");
    }
    assert_eq!(q[2 + 17] as i8, 2);
    assert_eq!(q[2 + 15] as i8, -2);
    let y = dequantize(GgmlType::Q8_0, &q, 32).unwrap();
    assert_eq!(y[17], 1.0);
    assert_eq!(y[0], 63.5);
}

#[test]
fn float_types_round_to_nearest_even() {
    let x = [1.0f32, -2.0, 65504.0, 1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), 0.0];
    let bf = quantize(GgmlType::BF16, &x).unwrap();
    let bits: Vec<u16> = bf.chunks(2).map(f16_bits).collect();
    assert_eq!(&bits[..2], &[0x3F80, 0xC000]);
    assert_eq!(bits[3], 0x3F80, "tie rounds to even (down)");
    assert_eq!(bits[4], 0x3F82, "tie rounds to even (up)");
    let h = quantize(GgmlType::F16, &x).unwrap();
    let hb: Vec<u16> = h.chunks(2).map(f16_bits).collect();
    assert_eq!(&hb[..3], &[0x3C00, 0xC000, 0x7BFF]);
    assert_eq!(dequantize(GgmlType::F16, &h, 6).unwrap()[..3], [1.0, -2.0, 65504.0]);
    assert_eq!(dequantize(GgmlType::BF16, &bf, 6).unwrap()[4], 1.0 + 2f32.powi(-6));
    let f = quantize(GgmlType::F32, &x).unwrap();
    assert_eq!(dequantize(GgmlType::F32, &f, 6).unwrap(), x.to_vec(), "F32 is bit-exact");
}

/// Worst |x - dequant(quant(x))| relative to what the format promises for each block.
#[test]
fn random_round_trip_error_bounds() {
    for (seed, scale) in [(1u32, 1.0f32), (2, 0.01), (3, 300.0)] {
        let x = lcg_vec(256 * 16, seed, scale);
        for ty in GgmlType::ALL {
            let y = dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            if ty.is_k_quant() {
                check_k_quant_errors(ty, &x, &y, seed);
            } else {
                check_block_errors(ty, &x, &y, seed);
            }
            // The typical error is well below the bound (catches a systematic offset).
            if !ty.is_float() {
                let mean: f32 = x.iter().zip(&y).map(|(a, b)| a - b).sum::<f32>() / x.len() as f32;
                assert!(mean.abs() < scale * 0.02, "{} mean error {mean}", ty.name());
            }
        }
    }
}

/// Float and 32-element types: half a step, plus the scale's own f16 rounding times the largest
/// quant, per element.
fn check_block_errors(ty: GgmlType, x: &[f32], y: &[f32], seed: u32) {
    for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let min = xb.iter().fold(f32::MAX, |a, &v| a.min(v));
        let max = xb.iter().fold(f32::MIN, |a, &v| a.max(v));
        let f16_rel = 2f32.powi(-11);
        for (j, (&a, &c)) in xb.iter().zip(yb).enumerate() {
            let bound = match ty {
                GgmlType::F32 => 0.0,
                GgmlType::F16 => a.abs() * f16_rel + 2f32.powi(-25), // subnormals: half of 2^-24
                GgmlType::BF16 => a.abs() * 2f32.powi(-8),
                GgmlType::Q8_0 => (amax / 127.0) * (0.5 + 128.0 * f16_rel),
                // The extreme opposite to the largest magnitude clamps at 7 of -8 steps (15 of -16).
                GgmlType::Q4_0 => (amax / 8.0) * (1.0 + 8.0 * f16_rel),
                GgmlType::Q5_0 => (amax / 16.0) * (1.0 + 16.0 * f16_rel),
                GgmlType::Q4_1 => ((max - min) / 15.0) * (0.5 + 16.0 * f16_rel) + min.abs() * f16_rel,
                GgmlType::Q5_1 => ((max - min) / 31.0) * (0.5 + 32.0 * f16_rel) + min.abs() * f16_rel,
                _ => unreachable!("{} is a K-quant", ty.name()),
            } * 1.0001;
            assert!((a - c).abs() <= bound, "{} seed {seed} block {b} elem {j}: {a} -> {c} (bound {bound})", ty.name());
        }
    }
}

/// K-quants, per 256-element super-block, against a uniform grid of the type's 2^bits levels
/// over [-amax, amax] (step 2·amax / (levels - 1)): the RMS error must not exceed that grid's
/// (step / √12, i.e. 1/(levels - 1) of the RMS of uniform data), since every sub-block gets its
/// own scale; no element may be off by more than 1.25 steps (sub-block scales are 4-8 bit
/// approximations of the best ones, and the searches trade an extreme element for the bulk).
fn check_k_quant_errors(ty: GgmlType, x: &[f32], y: &[f32], seed: u32) {
    let bits = match ty {
        GgmlType::Q2_K => 2,
        GgmlType::Q3_K => 3,
        GgmlType::Q4_K => 4,
        GgmlType::Q5_K => 5,
        _ => 6,
    };
    let levels = (1u32 << bits) as f32;
    for (b, (xb, yb)) in x.chunks(256).zip(y.chunks(256)).enumerate() {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let step = 2.0 * amax / (levels - 1.0);
        let (mut se, mut sx) = (0f64, 0f64);
        for (j, (&a, &c)) in xb.iter().zip(yb).enumerate() {
            assert!((a - c).abs() <= 1.25 * step, "{} seed {seed} block {b} elem {j}: {a} -> {c} (step {step})", ty.name());
            se += ((a - c) as f64).powi(2);
            sx += (a as f64).powi(2);
        }
        let rel = (se / sx).sqrt();
        assert!(rel <= 1.0 / (levels as f64 - 1.0), "{} seed {seed} block {b}: relative RMS error {rel:.4}", ty.name());
    }
}

#[test]
fn zero_and_constant_blocks() {
    let zero = vec![0f32; 256];
    for ty in GgmlType::ALL {
        let y = dequantize(ty, &quantize(ty, &zero).unwrap(), 256).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{}", ty.name());
    }
    let c = vec![-3.0f32; 32];
    assert_eq!(dequantize(GgmlType::Q4_1, &quantize(GgmlType::Q4_1, &c).unwrap(), 32).unwrap(), c);
    assert_eq!(dequantize(GgmlType::Q4_0, &quantize(GgmlType::Q4_0, &c).unwrap(), 32).unwrap()[0], -3.0);
    // A constant block decodes to one value, that constant up to the f16 rounding of its scales
    // (times a 6-bit scale at most: 2^-11 * 64).
    for v in [-3.0f32, 0.7, 1e-3] {
        let c = vec![v; 256];
        for ty in GgmlType::ALL.into_iter().filter(|t| !t.is_float()) {
            let y = dequantize(ty, &quantize(ty, &c).unwrap(), 256).unwrap();
            assert!(y.iter().all(|&e| e == y[0]), "{} constant {v}: {y:?}", ty.name());
            assert!((y[0] - v).abs() <= v.abs() * 2f32.powi(-5), "{} constant {v} -> {}", ty.name(), y[0]);
        }
    }
}

#[test]
fn non_finite_inputs_do_not_panic() {
    let mut x = lcg_vec(512, 9, 1.0);
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    x[301] = f32::NAN;
    for ty in GgmlType::ALL {
        let q = quantize(ty, &x).unwrap();
        assert_eq!(dequantize(ty, &q, 512).unwrap().len(), 512);
    }
}

#[test]
fn wrong_lengths_are_errors() {
    use mobilellm_web::Error::InvalidArgument;
    for ty in GgmlType::ALL.into_iter().filter(|t| !t.is_float()) {
        let (bl, bb) = (ty.block_len(), ty.block_bytes());
        assert!(matches!(quantize(ty, &vec![0.0; bl - 1]), Err(InvalidArgument(_))), "{}", ty.name());
        assert!(matches!(quantize(ty, &vec![0.0; bl + bl / 2]), Err(InvalidArgument(_))), "{}", ty.name());
        assert!(matches!(dequantize(ty, &vec![0; bb], bl - 1), Err(InvalidArgument(_))));
        assert!(matches!(dequantize(ty, &vec![0; bb - 1], bl), Err(InvalidArgument(_))));
        assert!(matches!(dequantize(ty, &vec![0; bb * 2], bl), Err(InvalidArgument(_))));
        assert_eq!(quantize(ty, &[]).unwrap().len(), 0);
    }
    assert!(matches!(dequantize(GgmlType::F32, &[0; 7], 2), Err(InvalidArgument(_))));
    assert!(matches!(dequantize(GgmlType::F16, &[0; 4], 3), Err(InvalidArgument(_))));
    assert!(dequantize(GgmlType::F32, &[], usize::MAX).is_err());
}

// ------------------------------------------------------------------ llama.cpp byte for byte

/// A small deterministic generator for the reference rows (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal (sum of four uniforms).
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.signed()).sum::<f32>() * 0.87
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The kinds of 256-element blocks the reference comparison quantises: the shapes real weights
/// have at every magnitude, and the corners where a quantiser's branches and roundings differ.
const ROW_KINDS: usize = 14;

fn reference_block(kind: usize, rng: &mut Rng) -> Vec<f32> {
    let mag = 10f32.powi(rng.below(14) as i32 - 8); // 1e-8 .. 1e5
    let mut x: Vec<f32> = (0..256).map(|_| rng.normal() * mag).collect();
    let at = rng.below(256) as usize;
    match kind {
        // 0: gaussian at one magnitude.
        0 => {}
        1 => x.fill(0.0),
        2 => x.fill(rng.signed() * mag),
        // Halves: exact ties for the rounding.
        3 => x.iter_mut().for_each(|v| *v = (rng.below(17) as f32 - 8.0) * 0.5),
        // Sparse outliers in zeros.
        4 => x.iter_mut().for_each(|v| *v = if rng.below(16) == 0 { *v * 30.0 } else { 0.0 }),
        // All positive (the affine searches' min > 0 case), all negative.
        5 => x.iter_mut().for_each(|v| *v = v.abs() + mag),
        6 => x.iter_mut().for_each(|v| *v = -v.abs() - mag),
        // Half the sub-blocks empty.
        7 => x[..128].fill(0.0),
        // Sub-block magnitudes over six decades.
        8 => x.chunks_mut(16).enumerate().for_each(|(g, c)| c.iter_mut().for_each(|v| *v *= 10f32.powi(g as i32 % 7 - 3))),
        // Subnormal and near the all-zero threshold; scales past f16's range.
        9 => x.iter_mut().for_each(|v| *v *= 1e-32),
        10 => x.iter_mut().for_each(|v| *v *= 1e4),
        // A coarse grid: many equal values.
        11 => x.iter_mut().for_each(|v| *v = (*v * 4.0 / mag).round() / 4.0 * mag),
        // One non-finite value.
        12 => x[at] = f32::NAN,
        _ => x[at] = if rng.below(2) == 0 { f32::INFINITY } else { f32::NEG_INFINITY },
    }
    x
}

/// llama.cpp's `quantize_row_<type>_ref` from node-llama-cpp's libggml-base.so (tools/reference,
/// installed by scripts/setup.sh) on the same rows, through tests/fixtures/llama_cpp_quantize.py.
fn llama_cpp_quantize(x: &[f32], types: &[GgmlType]) -> Vec<Vec<u8>> {
    use std::path::Path;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = root.join("tools/reference/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so");
    assert!(lib.exists(), "{} is missing: scripts/setup.sh installs tools/reference's npm packages", lib.display());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama_cpp_quantize");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.f32");
    std::fs::write(&input, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    // ggml's names: q4_0, q2_K.
    let names: Vec<String> = types.iter().map(|t| t.name()[..1].to_lowercase() + &t.name()[1..]).collect();
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/fixtures/llama_cpp_quantize.py"))
        .args([&lib, &input, &dir])
        .args(&names)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "llama_cpp_quantize.py: {}", String::from_utf8_lossy(&out.stderr));
    names.iter().map(|n| std::fs::read(dir.join(format!("{n}.bin"))).unwrap()).collect()
}

/// Every quantiser we have against llama.cpp's, byte for byte, on blocks of every kind (NaN and
/// infinities included: C's float-to-int conversions are reproduced as x86 executes them).
#[test]
fn quantisers_match_llama_cpp_byte_for_byte() {
    const PER_KIND: usize = 64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let x: Vec<f32> = (0..ROW_KINDS * PER_KIND).flat_map(|i| reference_block(i % ROW_KINDS, &mut rng)).collect();
    let types: Vec<GgmlType> = GgmlType::ALL.into_iter().filter(|t| !t.is_float()).collect();
    for (ty, want) in types.iter().zip(llama_cpp_quantize(&x, &types)) {
        let ours = quantize(*ty, &x).unwrap();
        assert_eq!(ours.len(), want.len(), "{}", ty.name());
        let bb = ty.block_bytes();
        let bad: Vec<usize> = (0..ours.len() / bb).filter(|b| ours[b * bb..][..bb] != want[b * bb..][..bb]).collect();
        if let Some(&b) = bad.first() {
            let kind = b * ty.block_len() / 256 % ROW_KINDS;
            let i = (0..bb).find(|&i| ours[b * bb + i] != want[b * bb + i]).unwrap();
            panic!(
                "{}: {} of {} blocks differ from llama.cpp; first: block {b} (kind {kind}) byte {i}: ours {:#04x} llama.cpp {:#04x}",
                ty.name(),
                bad.len(),
                ours.len() / bb,
                ours[b * bb + i],
                want[b * bb + i]
            );
        }
    }
}
