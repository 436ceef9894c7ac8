// The engine's four wasm builds (see build.sh) and how a worker picks one:
//   pkg             one thread, SIMD128 (WebGPU; the CPU backend without cross-origin isolation)
//   pkg-relaxed     one thread, relaxed-SIMD dot products for the CPU kernels
//   pkg-mt          shared memory: the CPU backend on a pool of Web Workers (needs COOP/COEP)
//   pkg-mt-relaxed  both
// A module using relaxed SIMD does not even compile in a browser without it, and one with shared
// memory cannot be instantiated without cross-origin isolation, so each build is its own module.
// The glue modules are imported statically (tens of KB each; a build's .wasm is only fetched
// when it is initialised): bundlers then emit every build with no configuration, and a worker
// needs no code splitting (Vite bundles workers as single scripts by default).

import * as pkg from './pkg/mobilellm_web.js';
import * as pkgRelaxed from './pkg-relaxed/mobilellm_web.js';
import * as pkgMt from './pkg-mt/mobilellm_web.js';
import * as pkgMtRelaxed from './pkg-mt-relaxed/mobilellm_web.js';

const BUILDS = { pkg, 'pkg-relaxed': pkgRelaxed, 'pkg-mt': pkgMt, 'pkg-mt-relaxed': pkgMtRelaxed };
export const VARIANTS = Object.freeze(Object.keys(BUILDS));

/** The wasm-bindgen glue module of a build (not yet initialised). */
export async function importVariant(name) {
  const glue = BUILDS[name];
  if (!glue) throw new Error(`unknown engine build ${name}`);
  return glue;
}

// A module whose one function computes i32x4.relaxed_dot_i8x16_i7x16_add_s on constants: it
// validates exactly where the browser implements relaxed SIMD.
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x13, 0x01, 0x11, 0x00, // code section (19 bytes): one body of 17 bytes, no locals
  0x41, 0x01, 0xfd, 0x0f, // i32.const 1; i8x16.splat
  0x41, 0x02, 0xfd, 0x0f, // i32.const 2; i8x16.splat
  0x41, 0x03, 0xfd, 0x11, // i32.const 3; i32x4.splat
  0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113)
  0x0b, // end
]);

export function hasRelaxedSimd() {
  try { return WebAssembly.validate(RELAXED_PROBE); } catch { return false; }
}

/** Threads need memory shared between workers, which browsers only allow cross-origin isolated. */
export function canShareMemory() {
  return globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
}

/**
 * The build for a backend and thread count: the WebGPU backend uses the plain single-thread build;
 * the CPU backend takes threads where the page is cross-origin isolated and more than one thread
 * is wanted, and relaxed SIMD where the browser has it. `pinned` (a wasmUrl string from the
 * caller) forces the plain single-thread build.
 */
export function chooseVariant({ backend, threads, pinned = false }) {
  if (backend !== 'cpu' || pinned) return 'pkg';
  const mt = threads > 1 && canShareMemory();
  const relaxed = hasRelaxedSimd();
  return `pkg${mt ? '-mt' : ''}${relaxed ? '-relaxed' : ''}`;
}

/** The .wasm URL the caller gave for a build, if any: a string pins `pkg`; an object maps names. */
export function wasmUrlFor(wasmUrl, variant) {
  if (!wasmUrl) return undefined;
  if (typeof wasmUrl === 'string') return variant === 'pkg' ? wasmUrl : undefined;
  return wasmUrl[variant];
}

/**
 * Whether an adapter is a CPU pretending to be a GPU (SwiftShader, llvmpipe/lavapipe, WARP): the
 * CPU backend is far faster there. Chrome 136+ says so directly (isFallbackAdapter); otherwise the
 * adapter's vendor/architecture/description strings name the software renderer.
 */
export function isSoftwareAdapter(adapter) {
  const info = adapter?.info ?? {};
  if (info.isFallbackAdapter === true || adapter?.isFallbackAdapter === true) return true;
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ').toLowerCase();
  return /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render|warp/.test(text);
}

/** 'webgpu' when a real GPU adapter is offered to this worker, else 'cpu' (with the reason). */
export async function probeBackend() {
  if (!globalThis.navigator?.gpu) return { backend: 'cpu', reason: 'this browser does not expose WebGPU' };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch { /* none */ }
  if (!adapter) return { backend: 'cpu', reason: 'no WebGPU adapter is offered' };
  if (isSoftwareAdapter(adapter)) {
    const i = adapter.info ?? {};
    return { backend: 'cpu', reason: `the WebGPU adapter is a software one (${[i.vendor, i.architecture].filter(Boolean).join(' ') || 'fallback adapter'})` };
  }
  return { backend: 'webgpu', reason: 'a hardware WebGPU adapter is available' };
}
