//! Micro-benchmark of the matmul kernel: decode matrix-vector products at the SmolLM2-135M shapes
//! and a 64-token prefill, on the default adapter, f32 and (when offered) f16 paths.
//!
//! cargo run --release --example bench_matmul [-- --f32-only] [--quick (decode only)]
//!
//! Each measurement encodes `reps` dispatches into one pass, submits once and waits, so the time
//! per product includes no per-submit overhead (as in a decode step of ~200 dispatches).
//! GB/s counts the weight bytes read (quants + scales) once per product.

use std::time::Instant;

use mobilellm_web::gpu::ops::matmul::{matmul, Epilogue};
use mobilellm_web::gpu::{Gpu, GpuOptions, Precision, GpuWeight, StepParams, TokenCount};
use mobilellm_web::quant::GgmlType;

/// Random block bytes (any quant bit pattern is valid; small f16 scales).
fn random_tensor(seed: &mut u64, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let nbytes = ty.bytes_for((rows * cols) as u64).unwrap() as usize;
    let mut out: Vec<u8> = (0..nbytes).map(|_| next() as u8).collect();
    // Overwrite every scale (and Q4_1 min) with a sane f16 (0.01) so no NaN/Inf slows anything.
    let (bb, nscale) = match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => (ty.block_bytes(), 1),
        GgmlType::Q4_1 => (ty.block_bytes(), 2),
        _ => unimplemented!("the benchmark covers the block types"),
    };
    for b in out.chunks_mut(bb) {
        for k in 0..nscale {
            b[2 * k..2 * k + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    out
}

fn bench(gpu: &Gpu, ty: GgmlType, rows: usize, cols: usize, tokens: u32) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let bytes = random_tensor(&mut seed, ty, rows, cols);
    let w = GpuWeight::upload(gpu, "w", ty, rows, cols, &bytes).unwrap();
    let weight_bytes = w.data.size() + w.scales.size();
    let x = gpu.storage_buffer_init("x", bytemuck::cast_slice(&vec![0.5f32; tokens as usize * cols]));
    let y = gpu.storage_buffer("y", 4 * (tokens as usize * rows) as u64);
    let step_buf = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
    let op = matmul(gpu, &step_buf, &w, &x, &y, Epilogue::Store, TokenCount::Step);
    let step = StepParams::new(0, tokens);
    let wait = || gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();

    // Warm up (pipeline already compiled), then pick reps for ~0.3 s.
    gpu.run_ops(&[&op], &step, &step_buf);
    wait();
    let t = Instant::now();
    gpu.run_ops(&[&op, &op], &step, &step_buf);
    wait();
    let one = t.elapsed().as_secs_f64() / 2.0;
    let reps = ((0.3 / one) as usize).clamp(2, 500);
    let _ = std::env::var("BENCH_ONLY");
    let ops: Vec<_> = std::iter::repeat_n(&op, reps).collect();
    let t = Instant::now();
    gpu.run_ops(&ops, &step, &step_buf);
    wait();
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let gflops = 2.0 * (rows * cols) as f64 * tokens as f64 / secs / 1e9;
    println!(
        "{:5} {:>6}x{:<5} T={:<3} {:8.3} ms  {:6.2} GB/s  {:6.2} GFLOP/s",
        ty.name(),
        rows,
        cols,
        tokens,
        secs * 1e3,
        weight_bytes as f64 / secs / 1e9,
        gflops
    );
}

fn main() {
    let f32_only = std::env::args().any(|a| a == "--f32-only");
    let quick = std::env::args().any(|a| a == "--quick");
    let mut paths = vec![true];
    if !f32_only {
        paths.push(false);
    }
    for force_f32 in paths {
        let gpu = pollster::block_on(Gpu::new(&GpuOptions { precision: if force_f32 { Precision::F32 } else { Precision::F16 } })).expect("GPU adapter");
        if !force_f32 && !gpu.f16 {
            break;
        }
        println!("== {}", gpu.adapter_summary());
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            for (rows, cols) in [(576, 576), (1536, 576), (576, 1536), (49152, 576)] {
                bench(&gpu, ty, rows, cols, 1);
            }
        }
        if quick {
            continue;
        }
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            bench(&gpu, ty, 1536, 576, 64);
            bench(&gpu, ty, 576, 1536, 64);
        }
    }
}
