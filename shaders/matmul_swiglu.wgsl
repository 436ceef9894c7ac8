// The fused gate/up product with the SwiGLU epilogue is matmul.wgsl specialised with GATED = true
// (see src/gpu/ops/matmul.rs): one kernel, one dequantiser, no pasted copy. This file stays only
// because Kernel::MatmulSwiglu names it; no op compiles it.
