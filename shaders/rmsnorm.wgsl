// RMSNorm: out[r] = x[r] / sqrt(mean(x[r]^2) + EPS) * weight, one workgroup per row.
// With LAST, a single workgroup normalises row n_tokens-1 into out row 0 (the logits input
// during generation). Activations are f32 on both precision paths.

override DIM: u32;
override EPS: f32;
override LAST: bool = false;

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    var row = wg.x + wg.y * nwg.x;
    var out_row = row;
    if (LAST) {
        row = step.n_tokens - 1u;
        out_row = 0u;
    }
    if (row >= step.n_tokens) {
        return;
    }
    let base = row * DIM;
    var ss = 0.0;
    for (var i = lid; i < DIM; i += WG) {
        let v = x[base + i];
        ss = fma(v, v, ss);
    }
    partial[lid] = ss;
    workgroupBarrier();
    // Tree reduction: relative error grows with log2(WG), not with DIM.
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(partial[0] / f32(DIM) + EPS);
    let obase = out_row * DIM;
    for (var i = lid; i < DIM; i += WG) {
        out[obase + i] = x[base + i] * scale * weight[i];
    }
}
