// out[t, :] = table[tokens[t], :] dequantised to f32, exactly as the CPU dequantiser does (the
// decoder is weights.wgsl's). One invocation expands one 16-byte unit of the row.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn put(base: u32, c: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if (c + k < COLS) {
            out[base + c + k] = v[k];
        }
    }
}

@compute @workgroup_size(EMBED_WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let u = gid.x;
    let t = gid.y;
    if (u >= ROW_UNITS || t >= step.n_tokens) {
        return;
    }
    // An out-of-range id (a corrupt prompt) reads the last row rather than out of bounds.
    let row = min(tokens[t], ROWS - 1u);
    let w = wq[row * ROW_UNITS + u];
    let dm = unit_dm(row, u);
    let h = unit_high(row, u);
    let first = u * epu();
    for (var p = 0u; p < pieces(); p++) {
        let e = piece_elements(piece_raw(w, h, p), dm);
        put(t * COLS, first + 4u * p, e.a);
        if (nibble_unit()) {
            put(t * COLS, first + 4u * p + 16u, e.b);
        }
    }
}
