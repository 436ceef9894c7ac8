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
        let x = lcg_vec(32 * 64, seed, scale);
        for ty in GgmlType::ALL {
            let y = dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
                let min = xb.iter().fold(f32::MAX, |a, &v| a.min(v));
                let max = xb.iter().fold(f32::MIN, |a, &v| a.max(v));
                let f16_rel = 2f32.powi(-11);
                for (j, (&a, &c)) in xb.iter().zip(yb).enumerate() {
                    // Half a step, plus the scale's own f16 rounding times the largest quant.
                    let bound = match ty {
                        GgmlType::F32 => 0.0,
                        GgmlType::F16 => a.abs() * f16_rel + 2f32.powi(-25), // subnormals: half of 2^-24
                        GgmlType::BF16 => a.abs() * 2f32.powi(-8),
                        GgmlType::Q8_0 => (amax / 127.0) * (0.5 + 128.0 * f16_rel),
                        // The extreme opposite to the largest magnitude clamps at 7 of -8 steps.
                        GgmlType::Q4_0 => (amax / 8.0) * (1.0 + 8.0 * f16_rel),
                        GgmlType::Q4_1 => ((max - min) / 15.0) * (0.5 + 16.0 * f16_rel) + min.abs() * f16_rel,
                    } * 1.0001;
                    assert!((a - c).abs() <= bound, "{} seed {seed} block {b} elem {j}: {a} -> {c} (bound {bound})", ty.name());
                }
            }
            // The typical error is well below the bound (catches a systematic offset).
            if matches!(ty, GgmlType::Q4_1 | GgmlType::Q4_0 | GgmlType::Q8_0) {
                let mean: f32 = x.iter().zip(&y).map(|(a, b)| a - b).sum::<f32>() / x.len() as f32;
                assert!(mean.abs() < scale * 0.02, "{} mean error {mean}", ty.name());
            }
        }
    }
}

#[test]
fn zero_and_constant_blocks() {
    let zero = vec![0f32; 64];
    for ty in GgmlType::ALL {
        let y = dequantize(ty, &quantize(ty, &zero).unwrap(), 64).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{}", ty.name());
    }
    let c = vec![-3.0f32; 32];
    assert_eq!(dequantize(GgmlType::Q4_1, &quantize(GgmlType::Q4_1, &c).unwrap(), 32).unwrap(), c);
    assert_eq!(dequantize(GgmlType::Q4_0, &quantize(GgmlType::Q4_0, &c).unwrap(), 32).unwrap()[0], -3.0);
}

#[test]
fn non_finite_inputs_do_not_panic() {
    let mut x = lcg_vec(64, 9, 1.0);
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[41] = f32::NEG_INFINITY;
    for ty in GgmlType::ALL {
        let q = quantize(ty, &x).unwrap();
        assert_eq!(dequantize(ty, &q, 64).unwrap().len(), 64);
    }
}

#[test]
fn wrong_lengths_are_errors() {
    use mobilellm_web::Error::InvalidArgument;
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        assert!(matches!(quantize(ty, &[0.0; 31]), Err(InvalidArgument(_))), "{}", ty.name());
        assert!(matches!(dequantize(ty, &vec![0; ty.block_bytes()], 31), Err(InvalidArgument(_))));
        assert!(matches!(dequantize(ty, &vec![0; ty.block_bytes() - 1], 32), Err(InvalidArgument(_))));
        assert!(matches!(dequantize(ty, &vec![0; ty.block_bytes() * 2], 32), Err(InvalidArgument(_))));
        assert_eq!(quantize(ty, &[]).unwrap().len(), 0);
    }
    assert!(matches!(dequantize(GgmlType::F32, &[0; 7], 2), Err(InvalidArgument(_))));
    assert!(matches!(dequantize(GgmlType::F16, &[0; 4], 3), Err(InvalidArgument(_))));
    assert!(dequantize(GgmlType::F32, &[], usize::MAX).is_err());
}
