//! The fused product kernel (shaders/matvec.wgsl) against the CPU reference (src/cpu/ops.rs), in
//! every form (software: 1 lane per row group; GPU: lanes reduced through workgroup memory or
//! subgroup shuffles), both paths (decode, prefill tiles), both precisions the adapter offers,
//! every weight type, awkward shapes, and every fused neighbour: RMSNorm input, residual add,
//! SwiGLU (interleaved and unfused), RoPE + KV write (fused and one matrix at a time), the last
//! token's logits. Bounds: tests/common/weights.rs. The classic types sweep here; the Q5 types and
//! K-quants (256-column rows) on a reduced sweep in kernels_matvec/kquant.rs.

mod common;
#[path = "kernels_matvec/kquant.rs"]
mod kquant;

use common::weights::{abs_dots, check, dequant, magnitudes, product_bound, random_tensor, U32};
use common::{gpus, Rng};
use mobilellm_web::cpu::ops;
use mobilellm_web::gpu::ops::embed::embed;
use mobilellm_web::gpu::ops::matvec::{matvec_with, qkv_with, Epilogue, Form, Norm, Product, QkvTarget, Rows, Tiling};
use mobilellm_web::gpu::ops::AttnShape;
use mobilellm_web::gpu::{concat_rows, interleave_rows, Gpu, GpuWeight, StepParams};
use mobilellm_web::quant::GgmlType;

const EPS: f32 = 1e-5;

/// Every form the kernel takes for `tiling` on this device: the software form (by unit with 8
/// and 16 rows, by piece with 8), the GPU form with a workgroup-memory reduction (4 and 32 lanes)
/// and with subgroup shuffles where the device has them (groups no wider than its smallest
/// subgroup).
fn forms(gpu: &Gpu, tiling: Tiling) -> Vec<Form> {
    let software = |rows, by_unit| Form { wg: 8, lanes: 1, rows, subgroup_reduce: false, by_unit };
    let mut out = if tiling == Tiling::Tiles { vec![software(4, true)] } else { vec![software(16, true), software(8, true), software(8, false)] };
    out.push(Form { wg: 64, lanes: 4, rows: 4, subgroup_reduce: false, by_unit: true });
    out.push(Form { wg: 64, lanes: 32, rows: if tiling == Tiling::Tiles { 4 } else { 8 }, subgroup_reduce: false, by_unit: tiling == Tiling::Tiles });
    if gpu.subgroups {
        let lanes = gpu.info.subgroup_min_size.min(8);
        out.push(Form { wg: 64, lanes, rows: 4, subgroup_reduce: true, by_unit: true });
    }
    out
}

fn step_buffer(gpu: &Gpu) -> wgpu::Buffer {
    gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64)
}

/// x for a product: its padding (up to 16 bytes) is NaN, which the kernel must never use.
fn x_buffer(gpu: &Gpu, x: &[f32]) -> wgpu::Buffer {
    let mut padded = x.to_vec();
    padded.resize(x.len().next_multiple_of(4), f32::NAN);
    gpu.storage_buffer_init("x", bytemuck::cast_slice(&padded))
}

/// Per-token RMSNorm of x [t, cols] (the reference input of a product with Norm).
fn normed(x: &[f32], g: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols).flat_map(|row| ops::rmsnorm(row, g, EPS)).collect()
}

/// The extra error a fused RMSNorm adds: 1/rms in f32 (a sum of cols squares, a division, a
/// square root) relative to the output, and x * g rounded once more than the reference does.
fn norm_bound(cols: usize, s: f32, reference: f32) -> f32 {
    (cols as f32 + 8.0) * U32 * (reference.abs() + s)
}

/// Random weights of type `ty`, uploaded, with their f32 values and magnitudes.
struct Weights {
    gpu: GpuWeight,
    values: Vec<f32>,
    mags: Vec<f32>,
}

fn weights(gpu: &Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> (Weights, Vec<u8>) {
    let bytes = random_tensor(rng, ty, rows, cols);
    let w = Weights {
        gpu: GpuWeight::upload(gpu, "w", ty, rows, cols, &bytes).unwrap(),
        values: dequant(ty, &bytes, rows * cols),
        mags: magnitudes(ty, &bytes, rows * cols),
    };
    (w, bytes)
}

struct Case {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    t: usize,
    norm: bool,
    epilogue: Epilogue,
}

/// y0 random, y = y0 (+)= norm?(x)·Wᵀ over t tokens, compared with the CPU.
fn product_case(gpu: &Gpu, form: Form, tiling: Tiling, rng: &mut Rng, c: &Case) {
    let Case { ty, rows, cols, t, norm, epilogue } = *c;
    let what = format!("{} {rows}x{cols} T={t} norm={norm} {epilogue:?} {tiling:?} {form:?} f16={}", ty.name(), gpu.f16);
    let (w, _) = weights(gpu, rng, ty, rows, cols);
    let x = rng.vec(t * cols, 1.0);
    let g = rng.vec(cols, 2.0);
    let y0 = rng.vec(t * rows, 1.0);
    let xin = if norm { normed(&x, &g, cols) } else { x.clone() };
    let mut want = ops::matmul(&xin, &w.values, rows, cols);
    let s = abs_dots(&xin, &w.mags, rows, cols);
    let low = gpu.f16 && tiling == Tiling::Tiles;
    let mut tol: Vec<f32> = want.iter().zip(&s).map(|(&r, &s)| product_bound(cols, s, r, low) + if norm { norm_bound(cols, s, r) } else { 0.0 }).collect();
    if epilogue == Epilogue::Accumulate {
        // The add rounds once more.
        want.iter_mut().zip(&y0).for_each(|(a, b)| *a += b);
        tol.iter_mut().zip(&want).for_each(|(e, w)| *e += 2.0 * U32 * w.abs());
    }

    let (xb, gb, step) = (x_buffer(gpu, &x), gpu.storage_buffer_init("g", bytemuck::cast_slice(&g)), step_buffer(gpu));
    let yb = gpu.storage_buffer_init("y", bytemuck::cast_slice(&y0));
    let p = Product { weight: &w.gpu, x: &xb, norm: norm.then_some(Norm { weight: &gb, eps: EPS }), rows: Rows::All(tiling) };
    let op = matvec_with(gpu, &step, &p, &yb, epilogue, Some(form));
    gpu.run_ops(&[&op], &StepParams::new(3, t as u32), &step);
    let got = pollster::block_on(gpu.read_f32(&yb, t * rows)).unwrap();
    check(&what, &got, &want, &tol);
}

/// Shapes: one block; ragged row groups and tiles; SmolLM2's products; more rows than one
/// dispatch row of workgroups holds at 8 rows per invocation... and, for float types, columns
/// that are not whole 16-byte units.
fn shapes(ty: GgmlType) -> Vec<(usize, usize, usize)> {
    let mut s = vec![(1, 32, 1), (7, 64, 3), (576, 576, 1), (33, 576, 9), (1536, 576, 2), (576, 1536, 1), (2050, 96, 17)];
    if ty.block_len() == 1 {
        s.extend([(5, 1, 2), (9, 7, 3), (13, 33, 1), (70, 100, 9)]);
    }
    s
}

/// The decode path computes in f32 on both precision paths (act_t appears only in tiles and the
/// KV cache), so on an f16 device only tiles (and qkv, for its f16 cache) are new variants.
fn tilings(gpu: &Gpu) -> Vec<Tiling> {
    if gpu.f16 {
        vec![Tiling::Tiles]
    } else {
        vec![Tiling::Decode, Tiling::Tiles]
    }
}

/// Every form, path, precision and type, each on about half of the shapes (in rotation, so every
/// shape meets every form across the types; a pipeline per case is most of the test's time).
#[test]
fn products_every_form_type_and_awkward_shape() {
    let mut rng = Rng(0x5eed_1001);
    for gpu in gpus() {
        for tiling in tilings(&gpu) {
            for (f, form) in forms(&gpu, tiling).into_iter().enumerate() {
                for (k, ty) in GgmlType::CLASSIC.into_iter().enumerate() {
                    for (i, (rows, cols, t)) in shapes(ty).into_iter().enumerate() {
                        if (i + f + k) % 2 == 1 {
                            continue;
                        }
                        // Vary the input and output sides too, so every combination meets every form.
                        let norm = (i + f) % 2 == 1 || i == 0;
                        let epilogue = if (i + k) % 3 == 2 { Epilogue::Accumulate } else { Epilogue::Store };
                        product_case(&gpu, form, tiling, &mut rng, &Case { ty, rows, cols, t, norm, epilogue });
                    }
                }
            }
        }
    }
}

#[test]
fn products_with_norm_and_residual_in_the_default_form() {
    let mut rng = Rng(0x5eed_1002);
    for gpu in gpus() {
        for tiling in tilings(&gpu) {
            for ty in GgmlType::CLASSIC {
                let w = GpuWeight::upload(&gpu, "probe", ty, 576, 576, &random_tensor(&mut rng, ty, 576, 576)).unwrap();
                let form = Form::for_adapter(&gpu, &w, tiling);
                for (norm, epilogue) in [(true, Epilogue::Store), (false, Epilogue::Accumulate), (true, Epilogue::Accumulate)] {
                    product_case(&gpu, form, tiling, &mut rng, &Case { ty, rows: 576, cols: 576, t: 10, norm, epilogue });
                }
            }
        }
    }
}

/// Gate and up: interleaved rows with the SwiGLU epilogue, and the unfused pair (gate stored,
/// then up with SwigluGate) that files with different gate/up types take.
#[test]
fn swiglu_interleaved_and_unfused() {
    let mut rng = Rng(0x5eed_1003);
    for gpu in gpus() {
        for tiling in tilings(&gpu) {
            for (f, form) in forms(&gpu, tiling).into_iter().enumerate() {
                for (k, ty) in GgmlType::CLASSIC.into_iter().enumerate() {
                    let mut shapes = vec![(1, 32, 1), (1536, 576, 1), (7, 576, 3), (100, 64, 9)];
                    if ty.block_len() == 1 {
                        shapes.push((9, 33, 2));
                    }
                    // Two shapes per form and type, in rotation.
                    for (i, (rows, cols, t)) in shapes.iter().copied().enumerate() {
                        if (i + f + k) % shapes.len() < 2 {
                            swiglu_case(&gpu, form, tiling, &mut rng, ty, rows, cols, t);
                        }
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn swiglu_case(gpu: &Gpu, form: Form, tiling: Tiling, rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, t: usize) {
    let what = format!("swiglu {} {rows}x{cols} T={t} {tiling:?} {form:?} f16={}", ty.name(), gpu.f16);
    let (gw, gbytes) = weights(gpu, rng, ty, rows, cols);
    let (uw, ubytes) = weights(gpu, rng, ty, rows, cols);
    let x = rng.vec(t * cols, 1.0);
    let g = rng.vec(cols, 2.0);
    let xin = normed(&x, &g, cols);
    let (gv, uv) = (ops::matmul(&xin, &gw.values, rows, cols), ops::matmul(&xin, &uw.values, rows, cols));
    let (sg, su) = (abs_dots(&xin, &gw.mags, rows, cols), abs_dots(&xin, &uw.mags, rows, cols));
    let want = ops::swiglu(&gv, &uv);
    let low = gpu.f16 && tiling == Tiling::Tiles;
    // silu' lies in [-0.1, 1.1] and |silu(g)| <= |g|: propagate the product bounds, plus the
    // f32 silu itself (exp and a division: a few ulp, 1e-6 relative).
    let tol: Vec<f32> = (0..want.len())
        .map(|i| {
            let eg = product_bound(cols, sg[i], gv[i], low) + norm_bound(cols, sg[i], gv[i]);
            let eu = product_bound(cols, su[i], uv[i], low) + norm_bound(cols, su[i], uv[i]);
            1.1 * eg * (uv[i].abs() + eu) + gv[i].abs() * eu + 1e-6 * want[i].abs() + 1e-30
        })
        .collect();

    let (xb, gb, step) = (x_buffer(gpu, &x), gpu.storage_buffer_init("g", bytemuck::cast_slice(&g)), step_buffer(gpu));
    let norm = Some(Norm { weight: &gb, eps: EPS });
    let run = |ops: &[&mobilellm_web::gpu::Op], out: &wgpu::Buffer| {
        gpu.run_ops(ops, &StepParams::new(0, t as u32), &step);
        pollster::block_on(gpu.read_f32(out, t * rows)).unwrap()
    };
    // Interleaved: one product over [2 * rows, cols].
    let both = interleave_rows(ty, cols, &gbytes, &ubytes).unwrap();
    let wb = GpuWeight::upload(gpu, "gate_up", ty, 2 * rows, cols, &both).unwrap();
    let out = gpu.storage_buffer("out", (4 * t * rows) as u64);
    let op = matvec_with(gpu, &step, &Product { weight: &wb, x: &xb, norm, rows: Rows::All(tiling) }, &out, Epilogue::SwigluPairs, Some(form));
    check(&format!("{what} interleaved"), &run(&[&op], &out), &want, &tol);
    // Unfused: gate into y, then up multiplies silu(y).
    let y = gpu.storage_buffer("y", (4 * t * rows) as u64);
    let gate = matvec_with(gpu, &step, &Product { weight: &gw.gpu, x: &xb, norm, rows: Rows::All(tiling) }, &y, Epilogue::Store, Some(form));
    let up = matvec_with(gpu, &step, &Product { weight: &uw.gpu, x: &xb, norm, rows: Rows::All(tiling) }, &y, Epilogue::SwigluGate, Some(form));
    check(&format!("{what} unfused"), &run(&[&gate, &up], &y), &want, &tol);
}

/// RMSNorm + [Q; K; V] + RoPE + KV write, as one product or three (different types), at several
/// positions; cache rows outside the step must keep their contents.
#[test]
fn qkv_rope_and_kv_write() {
    // (n_heads, n_kv_heads, head_dim, cols)
    let shapes = [(9u32, 3u32, 64u32, 576usize), (4, 1, 16, 64), (8, 8, 16, 32), (3, 1, 6, 32)];
    let mut rng = Rng(0x5eed_1004);
    for gpu in gpus() {
        for tiling in [Tiling::Decode, Tiling::Tiles] {
            for form in forms(&gpu, tiling) {
                for (i, &(nh, nkv, hd, cols)) in shapes.iter().enumerate() {
                    // The fused product in one type, and Q, K, V in three different ones.
                    let ty = GgmlType::CLASSIC[(i + 3) % 6];
                    qkv_case(&gpu, form, tiling, &mut rng, (nh, nkv, hd, cols), &[ty]);
                    qkv_case(&gpu, form, tiling, &mut rng, (nh, nkv, hd, cols), &[GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::F16]);
                }
            }
        }
    }
}

fn read_cache(gpu: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    if gpu.f16 {
        let bytes = pollster::block_on(gpu.read_buffer(buf, 0, 2 * n as u64)).unwrap();
        bytemuck::cast_slice::<u8, u16>(&bytes).iter().map(|&b| half::f16::from_bits(b).to_f32()).collect()
    } else {
        pollster::block_on(gpu.read_f32(buf, n)).unwrap()
    }
}

fn qkv_case(gpu: &Gpu, form: Form, tiling: Tiling, rng: &mut Rng, dims: (u32, u32, u32, usize), types: &[GgmlType]) {
    let (nh, nkv, hd, cols) = dims;
    let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, n_ctx: 2100, rope_base: 10000.0 };
    let (q_dim, kv_dim) = ((nh * hd) as usize, (nkv * hd) as usize);
    let parts = [q_dim, kv_dim, kv_dim];
    let types: Vec<GgmlType> = (0..3).map(|i| types[i % types.len()]).collect();
    let what = format!("qkv {nh}/{nkv} hd {hd} cols {cols} {types:?} {tiling:?} {form:?} f16={}", gpu.f16);
    let ws: Vec<(Weights, Vec<u8>)> = parts.iter().zip(&types).map(|(&r, &ty)| weights(gpu, rng, ty, r, cols)).collect();
    let fused = types.iter().all(|&t| t == types[0]);
    let gpu_weights: Vec<GpuWeight> = if fused {
        let bytes: Vec<&[u8]> = ws.iter().map(|(_, b)| b.as_slice()).collect();
        vec![GpuWeight::upload(gpu, "wqkv", types[0], q_dim + 2 * kv_dim, cols, &concat_rows(types[0], cols, &bytes).unwrap()).unwrap()]
    } else {
        Vec::new()
    };

    let step = step_buffer(gpu);
    let rope = gpu.storage_buffer_init("rope", bytemuck::cast_slice(&shape.rope_table()));
    let k_cache = gpu.storage_buffer("k_cache", shape.kv_cache_bytes(gpu));
    let v_cache = gpu.storage_buffer("v_cache", shape.kv_cache_bytes(gpu));
    let n_cache = shape.n_ctx as usize * kv_dim;
    let g = rng.vec(cols, 2.0);
    let gb = gpu.storage_buffer_init("g", bytemuck::cast_slice(&g));
    for &(pos0, t) in &[(0u32, 1usize), (0, 5), (37, 9), (2000, 3), (2099, 1)] {
        let x = rng.vec(t * cols, 1.0);
        let xb = x_buffer(gpu, &x);
        let q = gpu.storage_buffer("q", (4 * t * q_dim) as u64);
        let before = read_cache(gpu, &k_cache, n_cache);
        let norm = Some(Norm { weight: &gb, eps: EPS });
        let target = |row_base| QkvTarget { shape, q: &q, k_cache: &k_cache, v_cache: &v_cache, rope: &rope, row_base };
        let ops: Vec<_> = if fused {
            vec![qkv_with(gpu, &step, &Product { weight: &gpu_weights[0], x: &xb, norm, rows: Rows::All(tiling) }, &target(0), Some(form))]
        } else {
            let bases = [0, q_dim as u32, (q_dim + kv_dim) as u32];
            ws.iter()
                .zip(bases)
                .map(|((w, _), base)| qkv_with(gpu, &step, &Product { weight: &w.gpu, x: &xb, norm, rows: Rows::All(tiling) }, &target(base), Some(form)))
                .collect()
        };
        let refs: Vec<_> = ops.iter().collect();
        gpu.run_ops(&refs, &StepParams::new(pos0, t as u32), &step);

        // Reference: products of the normalised x, then rotation per token.
        let xin = normed(&x, &g, cols);
        let low = gpu.f16 && tiling == Tiling::Tiles;
        let out: Vec<(Vec<f32>, Vec<f32>)> = ws
            .iter()
            .zip(parts)
            .map(|((w, _), r)| {
                let want = ops::matmul(&xin, &w.values, r, cols);
                let s = abs_dots(&xin, &w.mags, r, cols);
                let tol = want.iter().zip(&s).map(|(&v, &s)| product_bound(cols, s, v, low) + norm_bound(cols, s, v)).collect();
                (want, tol)
            })
            .collect();
        let rotate = |(v, tol): &(Vec<f32>, Vec<f32>), heads: u32, width: usize| {
            let mut v = v.clone();
            for i in 0..t {
                ops::rope(&mut v[i * width..(i + 1) * width], heads as usize, hd as usize, pos0 as usize + i, shape.rope_base);
            }
            // A rotation mixes each pair: both errors, plus the table's f32 rounding and the
            // rotation's own (3 u32 of the pair's magnitude).
            let tol: Vec<f32> = (0..tol.len()).map(|j| tol[j] + tol[j ^ 1] + 3.0 * U32 * (v[j].abs() + v[j ^ 1].abs()) + 1e-30).collect();
            (v, tol)
        };
        let (want_q, tol_q) = rotate(&out[0], nh, q_dim);
        let (want_k, tol_k) = rotate(&out[1], nkv, kv_dim);
        let (want_v, tol_v) = out[2].clone();
        check(&format!("{what} pos0 {pos0} T {t}: q"), &pollster::block_on(gpu.read_f32(&q, t * q_dim)).unwrap(), &want_q, &tol_q);
        // f16 caches round once more: half an ulp, 2^-11 relative.
        let cache_tol =
            |want: &[f32], tol: &[f32]| -> Vec<f32> { want.iter().zip(tol).map(|(w, e)| e + if gpu.f16 { (w.abs() + e) / 2048.0 } else { 0.0 }).collect() };
        let kc = read_cache(gpu, &k_cache, n_cache);
        let vc = read_cache(gpu, &v_cache, n_cache);
        let rows = pos0 as usize * kv_dim..(pos0 as usize + t) * kv_dim;
        check(&format!("{what} pos0 {pos0} T {t}: k cache"), &kc[rows.clone()], &want_k, &cache_tol(&want_k, &tol_k));
        check(&format!("{what} pos0 {pos0} T {t}: v cache"), &vc[rows.clone()], &want_v, &cache_tol(&want_v, &tol_v));
        assert_eq!(&kc[..rows.start], &before[..rows.start], "{what}: rows before pos0 changed");
        assert_eq!(&kc[rows.end..], &before[rows.end..], "{what}: rows after changed");
    }
}

/// The head's product: only the last token's normalised x, into row 0 (vocabulary-sized rows:
/// more row groups than one dispatch dimension holds).
#[test]
fn last_token_logits() {
    let mut rng = Rng(0x5eed_1005);
    for gpu in gpus() {
        for form in forms(&gpu, Tiling::Decode) {
            for (ty, rows, cols, t) in [(GgmlType::Q8_0, 49152, 576, 3), (GgmlType::Q4_1, 300, 64, 1), (GgmlType::F16, 77, 40, 2)] {
                let what = format!("logits {} {rows}x{cols} T={t} {form:?} f16={}", ty.name(), gpu.f16);
                let (w, _) = weights(&gpu, &mut rng, ty, rows, cols);
                let x = rng.vec(t * cols, 1.0);
                let g = rng.vec(cols, 2.0);
                let xin = normed(&x[(t - 1) * cols..], &g, cols);
                let want = ops::matmul(&xin, &w.values, rows, cols);
                let s = abs_dots(&xin, &w.mags, rows, cols);
                let tol: Vec<f32> = want.iter().zip(&s).map(|(&r, &s)| product_bound(cols, s, r, false) + norm_bound(cols, s, r)).collect();
                let (xb, gb, step) = (x_buffer(&gpu, &x), gpu.storage_buffer_init("g", bytemuck::cast_slice(&g)), step_buffer(&gpu));
                let y = gpu.storage_buffer("logits", 4 * rows as u64);
                let p = Product { weight: &w.gpu, x: &xb, norm: Some(Norm { weight: &gb, eps: EPS }), rows: Rows::Last };
                let op = matvec_with(&gpu, &step, &p, &y, Epilogue::Store, Some(form));
                gpu.run_ops(&[&op], &StepParams::new(4, t as u32), &step);
                check(&what, &pollster::block_on(gpu.read_f32(&y, rows)).unwrap(), &want, &tol);
            }
        }
    }
}

/// The embedding gather shares the decoder: it converts, it does not compute, so it is bit-exact
/// on both paths.
#[test]
fn embed_every_type_is_exact() {
    let mut rng = Rng(0x5eed_1006);
    for gpu in gpus() {
        for ty in GgmlType::CLASSIC {
            let mut shapes = vec![(7, 32), (100, 576)];
            if ty.block_len() == 1 {
                shapes.extend([(3, 1), (11, 33)]);
            }
            for (rows, cols) in shapes {
                let bytes = random_tensor(&mut rng, ty, rows, cols);
                let w = GpuWeight::upload(&gpu, "table", ty, rows, cols, &bytes).unwrap();
                embed_check(&gpu, &w, &dequant(ty, &bytes, rows * cols));
            }
        }
    }
}

/// Gathers rows first, last, middle, first again and a third of `w` (whose values are `table`)
/// and asserts they equal the table's rows bit for bit.
fn embed_check(gpu: &Gpu, w: &GpuWeight, table: &[f32]) {
    let (rows, cols) = (w.rows as usize, w.cols as usize);
    let ids: Vec<u32> = [0, rows - 1, rows / 2, 0, rows / 3].map(|i| i as u32).to_vec();
    let tb = gpu.storage_buffer_init("tokens", bytemuck::cast_slice(&ids));
    let out = gpu.storage_buffer("out", (4 * ids.len() * cols) as u64);
    let step = step_buffer(gpu);
    let op = embed(gpu, &step, w, &tb, &out);
    gpu.run_ops(&[&op], &StepParams::new(0, ids.len() as u32), &step);
    let got = pollster::block_on(gpu.read_f32(&out, ids.len() * cols)).unwrap();
    let want: Vec<f32> = ids.iter().flat_map(|&i| table[i as usize * cols..][..cols].to_vec()).collect();
    // Equal as floats: a zero element may be -0 on the CPU ((q - 8) * d with d < 0) and +0 here
    // (q * d - 8 d), which nothing downstream can tell apart.
    let first_bad = got.iter().zip(&want).position(|(g, w)| g != w).map(|i| (i, got[i], want[i]));
    assert!(first_bad.is_none(), "embed {} {rows}x{cols} f16={}: (element, got, want) {first_bad:?}", w.ty.name(), gpu.f16);
}
