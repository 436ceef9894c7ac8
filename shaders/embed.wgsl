// out[t, :] = table[tokens[t], :] dequantised to f32 (exactly as the CPU dequantiser does).
// The table is in the layout of src/gpu/repack.rs; one thread expands one 16-byte unit.
// The decoding mirrors dequant() in matmul.wgsl, in f32 only (a gather has no arithmetic to save).
// WTYPE, ROWS (vocabulary size), COLS (embedding width), ROW_UNITS and epu() come from weights.wgsl.

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn nibbles(w: u32, high: bool) -> vec4<f32> {
    let sh = vec4<u32>(0u, 8u, 16u, 24u) + select(0u, 4u, high);
    return vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(0xfu));
}

// Elements 4j..4j+3 of unit `u` of `row`.
fn dequant(row: u32, u: u32, j: u32) -> vec4<f32> {
    let w = wq[row * ROW_UNITS + u];
    let nb = COLS / 32u;
    switch WTYPE {
        case 0u: { return bitcast<vec4<f32>>(w); }
        case 1u: {
            let p = select(w.xy, w.zw, j == 1u);
            return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
        }
        case 2u: {
            let p = select(w.xy, w.zw, j == 1u);
            let lo = p << vec2<u32>(16u);
            let hi = p & vec2<u32>(0xffff0000u);
            return bitcast<vec4<f32>>(vec4<u32>(lo.x, hi.x, lo.y, hi.y));
        }
        case 3u, 4u: {
            let g = row * nb + select(u, u / 2u, WTYPE == 3u);
            let d = unpack2x16float(ws[g / 2u])[g % 2u];
            if (WTYPE == 3u) {
                return vec4<f32>(unpack4xI8(w[j])) * d;
            }
            return (nibbles(w[j % 4u], j >= 4u) - vec4<f32>(8.0)) * d;
        }
        default: {
            let dm = unpack2x16float(ws[row * nb + u]);
            return nibbles(w[j % 4u], j >= 4u) * dm.x + dm.y;
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let u = gid.x;
    let t = gid.y;
    if (u >= ROW_UNITS || t >= step.n_tokens) {
        return;
    }
    // An out-of-range id (a corrupt prompt) reads the last row rather than out of bounds.
    let row = min(tokens[t], ROWS - 1u);
    for (var j = 0u; j < epu() / 4u; j++) {
        let v = dequant(row, u, j);
        let c = u * epu() + 4u * j;
        for (var k = 0u; k < 4u; k++) {
            if (c + k < COLS) {
                out[t * COLS + c + k] = v[k];
            }
        }
    }
}
