//! Shared test helpers: a GPU context on whatever adapter wgpu finds (lavapipe in CI), seeded
//! random data, and tolerance checks that report the worst element.
#![allow(dead_code)]

pub mod weights;

use mobilellm_web::gpu::{Gpu, GpuOptions, Precision};

/// Where scripts/fetch_model.sh and scripts/fetch_vocab.sh keep the test model, llama.cpp's
/// vocabularies and chat templates: `$MOBILELLM_CACHE`, or ~/.cache/mobilellm-web.
pub fn cache_dir() -> std::path::PathBuf {
    match std::env::var_os("MOBILELLM_CACHE") {
        Some(d) => d.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mobilellm-web"),
    }
}

/// A GPU context; `force_f32` selects the f32 path, otherwise f16 wherever the adapter has
/// shader-f16 (software adapters included: tests always exercise the f16 path where it exists).
pub fn gpu(force_f32: bool) -> Gpu {
    let precision = if force_f32 { Precision::F32 } else { Precision::F16 };
    pollster::block_on(Gpu::new(&GpuOptions { precision, ..Default::default() })).expect("a wgpu adapter (install mesa-vulkan-drivers)")
}

/// Both precision paths the adapter offers: always f32, plus f16 when available.
pub fn gpus() -> Vec<Gpu> {
    let f32_gpu = gpu(true);
    let probe = gpu(false);
    if probe.f16 {
        vec![f32_gpu, probe]
    } else {
        vec![f32_gpu]
    }
}

/// Small deterministic PRNG (xorshift64*), so tests need no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Asserts |got - want| <= atol + rtol * |want| everywhere, naming the worst index.
// why: `!(excess <= worst)` is also true when excess is NaN (NaN in `want`), on purpose.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if !(excess <= worst.1) || g.is_nan() {
            worst = (i, if g.is_nan() { f32::INFINITY } else { excess });
        }
    }
    assert!(worst.1 <= 0.0, "{what}: index {} got {} want {} (atol {atol}, rtol {rtol})", worst.0, got[worst.0], want[worst.0]);
}
