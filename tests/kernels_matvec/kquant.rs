//! The Q5 types and K-quants (GgmlType::K_AND_Q5) through the same cases as the classic types,
//! on a reduced sweep (each type meets every form and path, but not every shape): rows of 256
//! and 512 columns (K-quant blocks are 256 wide) and 1536 (SmolLM2's down), odd row counts,
//! ragged tiles; the embedding gather bit for bit; types mixed in one attention product; and a
//! tied Q6_K table used both as the embedding and as the logits matrix.

use super::*;

/// (rows, cols, tokens): one block per row, odd rows with a ragged tile, two row groups of 16
/// plus a remainder, and SmolLM2's down shape.
const SHAPES: [(usize, usize, usize); 4] = [(1, 256, 1), (33, 512, 9), (7, 256, 3), (576, 1536, 2)];

/// The forms whose loops decode differently: software by unit (16 rows: all four quads) and by
/// piece (8 rows), GPU lanes walking strided units by unit (4 rows) and by piece (8 rows); tiles
/// with one lane and with four. The group reductions (workgroup memory, subgroups) and the
/// epilogues do not depend on the weight type: the classic types' sweep covers them.
fn kquant_forms(tiling: Tiling) -> Vec<Form> {
    let form = |wg, lanes, rows, by_unit| Form { wg, lanes, rows, subgroup_reduce: false, by_unit };
    match tiling {
        Tiling::Decode => vec![form(8, 1, 16, true), form(8, 1, 8, false), form(64, 4, 4, true), form(64, 32, 8, false)],
        Tiling::Tiles => vec![form(8, 1, 4, true), form(64, 4, 4, true)],
    }
}

#[test]
fn kquant_products_every_form_and_path() {
    let mut rng = Rng(0x5eed_2001);
    for gpu in gpus() {
        for tiling in tilings(&gpu) {
            for (f, form) in kquant_forms(tiling).into_iter().enumerate() {
                for (k, ty) in GgmlType::K_AND_Q5.into_iter().enumerate() {
                    // Two of the shapes per form and type, in rotation.
                    for i in [0, 2] {
                        let (rows, cols, t) = SHAPES[(f + k + i) % SHAPES.len()];
                        let norm = (f + k + i / 2) % 2 == 0;
                        let epilogue = if (f + 2 * k + i) % 3 == 1 { Epilogue::Accumulate } else { Epilogue::Store };
                        product_case(&gpu, form, tiling, &mut rng, &Case { ty, rows, cols, t, norm, epilogue });
                    }
                }
            }
        }
    }
}

/// Gate and up interleaved (whole 256-element blocks per row) and unfused, in the adapter's
/// own form, for a type with one scale per unit and one with a scale per 16 elements.
#[test]
fn kquant_swiglu_in_the_default_form() {
    let mut rng = Rng(0x5eed_2002);
    for gpu in gpus() {
        for tiling in tilings(&gpu) {
            for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
                let w = GpuWeight::upload(&gpu, "probe", ty, 100, 512, &random_tensor(&mut rng, ty, 100, 512)).unwrap();
                swiglu_case(&gpu, Form::for_adapter(&gpu, &w, tiling), tiling, &mut rng, ty, 50, 512, 3);
            }
        }
    }
}

/// Q, K and V of three different types (so three unfused products), and one K-quant stacked.
#[test]
fn kquant_mixed_types_in_attention_products() {
    let mut rng = Rng(0x5eed_2003);
    for gpu in gpus() {
        for tiling in [Tiling::Decode, Tiling::Tiles] {
            let probe = GpuWeight::upload(&gpu, "probe", GgmlType::Q4_K, 64, 512, &random_tensor(&mut rng, GgmlType::Q4_K, 64, 512)).unwrap();
            let form = Form::for_adapter(&gpu, &probe, tiling);
            let dims = (4, 2, 64, 512);
            qkv_case(&gpu, form, tiling, &mut rng, dims, &[GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_0]);
            qkv_case(&gpu, form, tiling, &mut rng, dims, &[GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q5_1]);
            qkv_case(&gpu, form, tiling, &mut rng, (3, 1, 64, 256), &[GgmlType::Q5_K]);
        }
    }
}

/// Every type's embedding rows equal the CPU dequantiser's.
#[test]
fn kquant_embed_is_exact() {
    let mut rng = Rng(0x5eed_2004);
    for gpu in gpus() {
        for ty in GgmlType::K_AND_Q5 {
            for (rows, cols) in [(7, 256), (100, 1536)] {
                let bytes = random_tensor(&mut rng, ty, rows, cols);
                let w = GpuWeight::upload(&gpu, "table", ty, rows, cols, &bytes).unwrap();
                embed_check(&gpu, &w, &dequant(ty, &bytes, rows * cols));
            }
        }
    }
}

/// A tied Q6_K table (as in Q4_K_M files) serves as the embedding and, the same upload, as the
/// logits matrix of the last token, in every decode form.
#[test]
fn tied_q6_k_embedding_is_also_the_logits_matrix() {
    let mut rng = Rng(0x5eed_2005);
    let (ty, rows, cols, t) = (GgmlType::Q6_K, 3001, 512, 3);
    for gpu in gpus() {
        let (w, _) = weights(&gpu, &mut rng, ty, rows, cols);
        embed_check(&gpu, &w.gpu, &w.values);
        for form in forms(&gpu, Tiling::Decode) {
            let what = format!("tied logits {rows}x{cols} {form:?} f16={}", gpu.f16);
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
