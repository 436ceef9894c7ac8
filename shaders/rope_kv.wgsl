// RoPE (llama "normal": adjacent pairs (2i, 2i+1)) on q in place and on k, then k and v
// written into the KV cache rows pos0..pos0+T. One invocation per pair of elements.
// The (cos, sin) table is computed once on the CPU in f64, so the rotation is exact to f32
// rounding at any position (f32 sin/cos of pos * freq would lose ~pos * 2^-24 radians).

override HEAD_DIM: u32;
override N_HEADS: u32;
override N_KV_HEADS: u32;
override N_CTX: u32;

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> q: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<vec2<act_t>>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<vec2<act_t>>;
// (cos, sin) of pos * base^(-2i/HEAD_DIM): [N_CTX, HEAD_DIM / 2]
@group(0) @binding(6) var<storage, read> rope: array<vec2<f32>>;

fn rotate(x: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * cs.x - x.y * cs.y, x.x * cs.y + x.y * cs.x);
}

@compute @workgroup_size(WG)
fn rope_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let t = wg.y;
    let pos = step.pos0 + t;
    if (t >= step.n_tokens || pos >= N_CTX) {
        return;
    }
    let half = HEAD_DIM / 2u;
    let nq = N_HEADS * half;      // pairs of q per token
    let nkv = N_KV_HEADS * half;  // pairs of k (and of v) per token
    let i = gid.x;
    if (i < nq) {
        let cs = rope[pos * half + i % half];
        q[t * nq + i] = rotate(q[t * nq + i], cs);
    } else if (i < nq + nkv) {
        let j = i - nq;
        let cs = rope[pos * half + j % half];
        k_cache[pos * nkv + j] = vec2<act_t>(rotate(k[t * nkv + j], cs));
    } else if (i < nq + 2u * nkv) {
        let j = i - nq - nkv;
        v_cache[pos * nkv + j] = vec2<act_t>(v[t * nkv + j]);
    }
}
