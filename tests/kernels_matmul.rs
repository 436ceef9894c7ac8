//! LEGACY (until the engine records ops::matvec): matmul and fused SwiGLU kernels against the CPU reference (src/cpu/ops.rs) on
//! random weights of every type, on both precision paths the adapter offers (gpus()).
//!
//! Tolerances are worst-case rounding bounds per output, from the arithmetic (u32 = 2^-24 and
//! u16 = 2^-11 are the unit roundoffs; S = sum_c |x_c * w_c| for that output):
//! - f32 path: weights dequantise exactly (d*q has <= 19 significant bits; Q4_1's d*q+m rounds
//!   once, as on the CPU), so only the summation order differs from the f64 reference:
//!   |err| <= gamma_(cols+2) * S ~ (cols + 2) * u32 * S, plus one rounding of the result.
//! - f16 path: x and w rounded to f16 (2 u16), each product (1 u16), each 4-term dot (3 u16),
//!   then f32 accumulation: |err| <= 6 u16 * S + f16 underflow (<= 2^-25 per operation, 5 per
//!   element) + the f32 bound. That bound is loose enough to hide a single misplaced element, but
//!   the f16 path is the same shader text as the f32 path (only `act_t` differs), whose tight bound
//!   catches indexing mistakes.
mod common;

use common::{gpus, Rng};
use half::{bf16, f16};
use mobilellm_web::cpu::ops;
use mobilellm_web::gpu::ops::matmul::{matmul, matmul_swiglu, Epilogue};
use mobilellm_web::gpu::{Gpu, GpuWeight, StepParams, TokenCount};
use mobilellm_web::quant::{dequantize, GgmlType};

const U32: f32 = 1.0 / (1u32 << 24) as f32;
const U16: f32 = 1.0 / 2048.0;

/// Random GGUF bytes for a [rows, cols] tensor: any bit pattern of quants is valid, scales are
/// kept in a realistic range (weights of order 0.1).
fn random_tensor(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut out = Vec::with_capacity(ty.bytes_for(n as u64).unwrap() as usize);
    let scale = |rng: &mut Rng, s: f32| f16::from_f32(rng.uniform() * s).to_le_bytes();
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend(rng.uniform().to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| out.extend(f16::from_f32(rng.uniform()).to_le_bytes())),
        GgmlType::BF16 => (0..n).for_each(|_| out.extend(bf16::from_f32(rng.uniform()).to_le_bytes())),
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
            for _ in 0..n / 32 {
                let d = if ty == GgmlType::Q8_0 { 0.002 } else { 0.03 };
                out.extend(scale(rng, d));
                if ty == GgmlType::Q4_1 {
                    out.extend(scale(rng, 0.2));
                }
                let nq = if ty == GgmlType::Q8_0 { 32 } else { 16 };
                out.extend((0..nq).map(|_| rng.next_u64() as u8));
            }
        }
    }
    out
}

/// The tensor as f32, by the library's dequantiser (ggml's reference arithmetic).
fn dequant(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    dequantize(ty, bytes, n).expect("dequantize")
}

/// Per-output bound on |gpu - reference| (see the module comment).
fn bound(gpu: &Gpu, cols: usize, s: f32, reference: f32) -> f32 {
    let f32_part = (cols as f32 + 2.0) * U32 * s + 2.0 * U32 * reference.abs() + 1e-30;
    if gpu.f16 { f32_part + 6.0 * U16 * s + 5.0 * cols as f32 * 2f32.powi(-25) } else { f32_part }
}

/// sum_c |x[t, c] * w[r, c]| for every output [t, r].
fn abs_dots(x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let aw: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    ops::matmul(&ax, &aw, rows, cols)
}

fn check(what: &str, got: &[f32], want: &[f32], tol: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let err = (got[i] - want[i]).abs();
        assert!(err <= tol[i], "{what}: index {i} got {} want {} (|err| {err} > bound {})", got[i], want[i], tol[i]);
    }
}

/// x for matmul: the kernel reads it as vec4s, so its size is rounded up to 16 bytes.
fn x_buffer(gpu: &Gpu, x: &[f32]) -> wgpu::Buffer {
    let mut padded = x.to_vec();
    padded.resize(x.len().next_multiple_of(4), f32::NAN); // never read as a value: masked
    gpu.storage_buffer_init("x", bytemuck::cast_slice(&padded))
}

struct Setup {
    step: wgpu::Buffer,
}

/// Every precision path, each with both row splits of the matmul kernel: the software adapters'
/// (2 lanes per row for big matrices) and the GPUs' (see ops::matmul::threads_per_row).
fn matmul_gpus() -> Vec<Gpu> {
    let mut out = Vec::new();
    for gpu in gpus() {
        let mut other = common::gpu(!gpu.f16);
        other.cpu_like = !gpu.cpu_like;
        out.push(gpu);
        out.push(other);
    }
    out
}

fn setup(gpu: &Gpu) -> Setup {
    Setup { step: gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64) }
}

/// One matmul case: y0 random, y = y0 (+)= x·Wᵀ over `t` tokens (or token 0 only), compared with
/// the CPU; with TokenCount::One the other rows of y must keep y0.
fn matmul_case(gpu: &Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, t: usize, epi: Epilogue, tokens: TokenCount) {
    let what = format!("{} {rows}x{cols} T={t} {epi:?} {tokens:?} f16={} cpu_like={}", ty.name(), gpu.f16, gpu.cpu_like);
    let bytes = random_tensor(rng, ty, rows, cols);
    let w = dequant(ty, &bytes, rows * cols);
    let gw = GpuWeight::upload(gpu, "w", ty, rows, cols, &bytes).unwrap();
    let x = rng.vec(t * cols, 1.0);
    let y0 = rng.vec(t * rows, 1.0);
    let xb = x_buffer(gpu, &x);
    let yb = gpu.storage_buffer_init("y", bytemuck::cast_slice(&y0));
    let s = setup(gpu);
    let op = matmul(gpu, &s.step, &gw, &xb, &yb, epi, tokens);
    gpu.run_ops(&[&op], &StepParams::new(5, t as u32), &s.step);
    let got = pollster::block_on(gpu.read_f32(&yb, t * rows)).unwrap();
    let done = if tokens == TokenCount::One { 1 } else { t };
    let mut want = ops::matmul(&x[..done * cols], &w, rows, cols);
    let s_abs = abs_dots(&x[..done * cols], &w, rows, cols);
    if epi == Epilogue::Accumulate {
        want.iter_mut().zip(&y0).for_each(|(a, b)| *a += b);
    }
    let mut tol: Vec<f32> = want.iter().zip(&s_abs).map(|(&r, &s)| bound(gpu, cols, s, r)).collect();
    want.extend_from_slice(&y0[done * rows..]);
    tol.resize(want.len(), 0.0); // rows past the op's tokens are untouched, bit for bit
    check(&what, &got, &want, &tol);
}

#[test]
fn matmul_every_type_and_awkward_shape() {
    let mut rng = Rng(0x5eed_0001);
    for gpu in matmul_gpus() {
        for ty in GgmlType::ALL {
            // (2050, 96, 9): enough rows for the software split (2 lanes per row), a ragged last tile.
            let mut shapes = vec![(1, 32, 1), (7, 64, 3), (576, 576, 1), (1536, 576, 3), (576, 1536, 1), (33, 576, 64), (576, 64, 17), (2050, 96, 9)];
            if ty.block_len() == 1 {
                shapes.extend([(5, 1, 2), (9, 7, 3), (13, 33, 1), (70, 100, 9)]);
            }
            for (rows, cols, t) in shapes {
                matmul_case(&gpu, &mut rng, ty, rows, cols, t, Epilogue::Store, TokenCount::Step);
            }
        }
    }
}

#[test]
fn matmul_accumulate_and_one_token() {
    let mut rng = Rng(0x5eed_0002);
    for gpu in matmul_gpus() {
        for ty in GgmlType::ALL {
            matmul_case(&gpu, &mut rng, ty, 96, 576, 10, Epilogue::Accumulate, TokenCount::Step);
            matmul_case(&gpu, &mut rng, ty, 96, 64, 3, Epilogue::Store, TokenCount::One);
            matmul_case(&gpu, &mut rng, ty, 7, 64, 3, Epilogue::Accumulate, TokenCount::One);
        }
    }
}

/// The tied-embedding logits: more row tiles than fit in one dispatch dimension at small
/// workgroup row counts, so the x/y split is exercised.
#[test]
fn matmul_logits_sized_q8_0() {
    let mut rng = Rng(0x5eed_0003);
    for gpu in matmul_gpus() {
        matmul_case(&gpu, &mut rng, GgmlType::Q8_0, 49152, 576, 1, Epilogue::Store, TokenCount::One);
        matmul_case(&gpu, &mut rng, GgmlType::Q8_0, 49153, 64, 2, Epilogue::Store, TokenCount::Step);
    }
}

#[test]
fn swiglu_every_type() {
    let mut rng = Rng(0x5eed_0004);
    for gpu in matmul_gpus() {
        for ty in GgmlType::ALL {
            let mut shapes = vec![(1, 32, 1), (1536, 576, 1), (7, 576, 3), (100, 64, 64)];
            if ty.block_len() == 1 {
                shapes.push((9, 33, 2));
            }
            for (rows, cols, t) in shapes {
                let what = format!("swiglu {} {rows}x{cols} T={t} f16={} cpu_like={}", ty.name(), gpu.f16, gpu.cpu_like);
                let (gb, ub) = (random_tensor(&mut rng, ty, rows, cols), random_tensor(&mut rng, ty, rows, cols));
                let (gw, uw) = (dequant(ty, &gb, rows * cols), dequant(ty, &ub, rows * cols));
                let x = rng.vec(t * cols, 1.0);
                let s = setup(&gpu);
                let gate = GpuWeight::upload(&gpu, "gate", ty, rows, cols, &gb).unwrap();
                let up = GpuWeight::upload(&gpu, "up", ty, rows, cols, &ub).unwrap();
                let xb = x_buffer(&gpu, &x);
                let out = gpu.storage_buffer("out", (4 * t * rows) as u64);
                let op = matmul_swiglu(&gpu, &s.step, &gate, &up, &xb, &out);
                gpu.run_ops(&[&op], &StepParams::new(0, t as u32), &s.step);
                let got = pollster::block_on(gpu.read_f32(&out, t * rows)).unwrap();

                let (g, u) = (ops::matmul(&x, &gw, rows, cols), ops::matmul(&x, &uw, rows, cols));
                let (sg, su) = (abs_dots(&x, &gw, rows, cols), abs_dots(&x, &uw, rows, cols));
                let want = ops::swiglu(&g, &u);
                // silu' is within [-0.1, 1.1], |silu(g)| <= |g|: propagate the product bounds,
                // plus the f32 silu itself (exp and a division: a few ulp, 1e-6 relative).
                let tol: Vec<f32> = (0..want.len())
                    .map(|i| {
                        let (eg, eu) = (bound(&gpu, cols, sg[i], g[i]), bound(&gpu, cols, su[i], u[i]));
                        1.1 * eg * (u[i].abs() + eu) + g[i].abs() * eu + 1e-6 * want[i].abs() + 1e-30
                    })
                    .collect();
                check(&what, &got, &want, &tol);
            }
        }
    }
}
