// The repacked weight layout (src/gpu/repack.rs) and its one decoder, shared by every kernel that
// reads weights (embed.wgsl, matvec.wgsl). Each row of W is a run of 16-byte units (one
// vec4<u32> load); the type-specific scales live in a separate array of u32 words.
//
// A unit is decoded in "pieces": piece p holds the raw values that multiply x vec4 p of the unit
// (slot a) and, for the 4-bit types, x vec4 p + 4 too (slot b). Raw values
// are exact small integers or floats, some scaled by a power of two (RAW_SCALE) so that no
// shift is needed to extract them: a nibble is masked in place. Then, per unit with
// (d, off) = unit_dm(row, u):
//     element = raw * RAW_SCALE * d + off            (exact, as the CPU dequantiser; one rounding
//                                                     for Q4_1's + m, as on the CPU)
//     sum_i element_i x_i = d * sum_i raw_i (x_i * RAW_SCALE) + off * sum_i x_i
// The second form is what decode products use: x is scaled once per unit and serves every row,
// and no per-weight multiply by d or add of the offset is left.
//
// WTYPE is a WT_* code; the WT_* constants are generated from quant::GgmlType (kernel.rs).

override WTYPE: u32;
override ROWS: u32;        // rows of W
override COLS: u32;        // columns of W (elements per row)
override ROW_UNITS: u32;   // vec4<u32> units per row

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

// Raw nibbles are masked in place: nibble j of a byte-lane sits at 2^(8j) (low) or, after one
// shift by 4, the high nibble too. x is multiplied by the inverse to match.
const RAW_SCALE_Q4 = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const NIBBLE_MASKS = vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000000u);
// Q8_0 bytes, masked in place the same way (the top byte shifted down by one byte).
const RAW_SCALE_Q8 = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 65536.0);
const BYTE_MASKS = vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u);

fn is_q4() -> bool {
    return WTYPE == WT_Q4_0 || WTYPE == WT_Q4_1;
}

// Elements per 16-byte unit of a row.
fn epu() -> u32 {
    switch WTYPE {
        case WT_F32: { return 4u; }
        case WT_F16, WT_BF16: { return 8u; }
        case WT_Q8_0: { return 16u; }
        default: { return 32u; }
    }
}

// Pieces per unit: F32 1 (the whole unit), F16/BF16 2 (two words each), Q8_0 and Q4 4 (a word).
fn pieces() -> u32 {
    switch WTYPE {
        case WT_F32: { return 1u; }
        case WT_F16, WT_BF16: { return 2u; }
        default: { return 4u; }
    }
}

// What x is multiplied by before a raw dot product (slot a and slot b alike).
fn raw_scale() -> vec4<f32> {
    switch WTYPE {
        case WT_Q4_0, WT_Q4_1: { return RAW_SCALE_Q4; }
        case WT_Q8_0: { return RAW_SCALE_Q8; }
        default: { return vec4<f32>(1.0); }
    }
}

struct Piece {
    a: vec4<f32>,
    b: vec4<f32>,  // 4-bit types only
}

fn bf16_pair(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

// Raw values of piece p of unit `w` (see the top of the file). Every case is exact.
fn piece_raw(w: vec4<u32>, p: u32) -> Piece {
    switch WTYPE {
        case WT_F32: { return Piece(bitcast<vec4<f32>>(w), vec4<f32>(0.0)); }
        case WT_F16: {
            return Piece(vec4<f32>(unpack2x16float(w[2u * p]), unpack2x16float(w[2u * p + 1u])), vec4<f32>(0.0));
        }
        case WT_BF16: { return Piece(vec4<f32>(bf16_pair(w[2u * p]), bf16_pair(w[2u * p + 1u])), vec4<f32>(0.0)); }
        case WT_Q8_0: {
            // Flipping the sign bit turns each signed quant q into the unsigned q + 128 (the
            // offset is the unit's: off = -128 d), which is masked in place like a nibble. The
            // top byte is moved down one byte first, so every value fits an i32.
            let b = w[p] ^ 0x80808080u;
            let u = vec4<u32>(b, b, b, b >> 8u) & BYTE_MASKS;
            return Piece(vec4<f32>(bitcast<vec4<i32>>(u)), vec4<f32>(0.0));
        }
        default: {
            // Byte j of word p holds element 4p + j (low nibble) and 4p + j + 16 (high nibble).
            let lo = vec4<u32>(w[p]) & NIBBLE_MASKS;
            let hi = vec4<u32>(w[p] >> 4u) & NIBBLE_MASKS;
            return Piece(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
        }
    }
}

// (d, off) of unit u of `row`: element = raw * raw_scale() * d + off. Floats: (1, 0).
fn unit_dm(row: u32, u: u32) -> vec2<f32> {
    let nb = COLS / 32u;
    switch WTYPE {
        case WT_Q8_0: {
            let g = row * nb + u / 2u;
            let d = unpack2x16float(ws[g / 2u])[g % 2u];
            return vec2<f32>(d, -128.0 * d);
        }
        case WT_Q4_0: {
            let g = row * nb + u;
            let d = unpack2x16float(ws[g / 2u])[g % 2u];
            return vec2<f32>(d, -8.0 * d);
        }
        case WT_Q4_1: { return unpack2x16float(ws[row * nb + u]); }
        default: { return vec2<f32>(1.0, 0.0); }
    }
}

// The elements of piece p from its raw values (exact, see the top of the file).
fn piece_elements(raw: Piece, dm: vec2<f32>) -> Piece {
    let s = raw_scale() * dm.x;
    return Piece(fma(raw.a, s, vec4<f32>(dm.y)), fma(raw.b, s, vec4<f32>(dm.y)));
}

// sum_i element_i x_i over a unit from sum_i raw_i (x_i * raw_scale()) and sum_i x_i.
fn unit_dot(raw_dot: f32, dm: vec2<f32>, x_sum: f32) -> f32 {
    if (WTYPE == WT_Q4_0 || WTYPE == WT_Q4_1 || WTYPE == WT_Q8_0) {
        return fma(dm.x, raw_dot, dm.y * x_sum);
    }
    return dm.x * raw_dot;
}
