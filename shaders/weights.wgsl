// The repacked weight layout (src/gpu/repack/) and its one decoder, shared by every kernel that
// reads weights (embed.wgsl, matvec.wgsl). Each row of W is a run of 16-byte units (one
// vec4<u32> load); the type-specific scales (and the quants' bits above the fourth) live in a
// separate array of u32 words.
//
// A unit is decoded in "pieces": piece p holds the raw values that multiply x vec4 p of the unit
// (slot a) and, for the nibble units (every quantised type but Q8_0), x vec4 p + 4 too (slot b).
// Raw values are exact small integers or floats, some scaled by a power of two (RAW_SCALE) so
// that no shift is needed to extract them: a nibble is masked in place, and a fifth and sixth
// bit (Q5_*, Q6_K) are moved next to it by a constant multiply. Then, per unit with
// (d, off) = unit_dm(row, u) (per slot for the types with a scale per 16 elements: Q2_K, Q3_K,
// Q6_K):
//     element = raw * RAW_SCALE * d + off            (exact, as the CPU dequantiser: one rounding
//                                                     where ggml rounds once, e.g. d1 * q - m1)
//     sum_i element_i x_i = d * sum_i raw_i (x_i * RAW_SCALE) + off * sum_i x_i
// The second form is what decode products use: x is scaled once per unit and serves every row,
// and no per-weight multiply by d or add of the offset is left.
//
// WTYPE is a WT_* code; the WT_* constants are generated from quant::GgmlType (kernel.rs). Type
// tests (nibble_unit(), split_slots(), ...) fold away when the pipeline is created.

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
// High bits (repack/kquant.rs: high-bit words) join their nibble at bit 8j + 4 of lane j:
// multiplying the piece's bits by a power of two per lane is a shift that SwiftShader keeps
// vectorised (variable shifts it scalarises), and the mask keeps only the one source bit (or
// pair) that lands there. 5-bit types: slot a's bit j of the piece's byte, slot b's bit j + 4. Q6_K: slot
// a's pair at bits 4j, slot b's at 4j + 2 of the piece's 16 bits.
const SPREAD5_A = vec4<u32>(16u, 2048u, 262144u, 33554432u);   // 2^(4 + 7j)
const SPREAD5_B = vec4<u32>(1u, 128u, 16384u, 2097152u);       // 2^(7j)
const BIT4_MASKS = vec4<u32>(0x10u, 0x1000u, 0x100000u, 0x10000000u);
const SPREAD6_A = vec4<u32>(16u, 256u, 4096u, 65536u);         // 2^(4j + 4)
const SPREAD6_B = vec4<u32>(4u, 64u, 1024u, 16384u);           // 2^(4j + 2)
const BITS45_MASKS = vec4<u32>(0x30u, 0x3000u, 0x300000u, 0x30000000u);

// Types stored as nibble units (32 elements, two slots per piece): all but the floats and Q8_0.
fn nibble_unit() -> bool {
    return !(WTYPE == WT_F32 || WTYPE == WT_F16 || WTYPE == WT_BF16 || WTYPE == WT_Q8_0);
}

// Types with a scale per 16 elements: slots a and b of a unit have their own (d, off), so their
// raw dot products and x sums are kept apart.
fn split_slots() -> bool {
    return WTYPE == WT_Q2_K || WTYPE == WT_Q3_K || WTYPE == WT_Q6_K;
}

// Types whose units share a block word [d | dmin] with the other 7 units of their 256-element
// block: decode loops may read it once per block (block_dm) and pass it to unit_dm_in.
fn block_scaled() -> bool {
    return WTYPE == WT_Q4_K || WTYPE == WT_Q5_K || WTYPE == WT_Q2_K;
}

// Units (32 elements) of the whole matrix: the scales array's regions (GpuLayout in
// repack/mod.rs) start at multiples of it.
fn all_units() -> u32 {
    return ROWS * (COLS / 32u);
}

// High-bit words per unit: 1 for the 5-bit types, 2 for Q6_K.
fn high_words() -> u32 {
    switch WTYPE {
        case WT_Q5_0, WT_Q5_1, WT_Q5_K: { return 1u; }
        case WT_Q6_K: { return 2u; }
        default: { return 0u; }
    }
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

// Pieces per unit: F32 1 (the whole unit), F16/BF16 2 (two words each), Q8_0 and nibbles 4 (a word).
fn pieces() -> u32 {
    switch WTYPE {
        case WT_F32: { return 1u; }
        case WT_F16, WT_BF16: { return 2u; }
        default: { return 4u; }
    }
}

// What x is multiplied by before a raw dot product (slot a and slot b alike).
fn raw_scale() -> vec4<f32> {
    if (nibble_unit()) {
        return RAW_SCALE_Q4;
    }
    if (WTYPE == WT_Q8_0) {
        return RAW_SCALE_Q8;
    }
    return vec4<f32>(1.0);
}

struct Piece {
    a: vec4<f32>,
    b: vec4<f32>,  // nibble units only
}

fn bf16_pair(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

// The high-bit words of unit u of `row` (zeros for types without): the scales array's last
// region, after all_units() / 2 (Q5_0: rounded up), all_units() (Q5_1, Q6_K) or 5/8 of it (Q5_K)
// words.
fn unit_high(row: u32, u: u32) -> vec2<u32> {
    let n = all_units();
    let g = row * (COLS / 32u) + u;
    switch WTYPE {
        case WT_Q5_0: { return vec2<u32>(ws[(n + 1u) / 2u + g], 0u); }
        case WT_Q5_1: { return vec2<u32>(ws[n + g], 0u); }
        case WT_Q5_K: { return vec2<u32>(ws[n / 8u + n / 2u + g], 0u); }
        case WT_Q6_K: { return vec2<u32>(ws[n + 2u * g], ws[n + 2u * g + 1u]); }
        default: { return vec2<u32>(0u); }
    }
}

// Raw values of piece p of unit `w` with high-bit words `h` (see the top of the file). Every
// case is exact.
fn piece_raw(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
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
            // Byte j of word p holds element 4p + j (low nibble) and 4p + j + 16 (high nibble);
            // bits 4-5 join from the high-bit words (at most bit 29 of lane 3: an i32 still).
            var lo = vec4<u32>(w[p]) & NIBBLE_MASKS;
            var hi = vec4<u32>(w[p] >> 4u) & NIBBLE_MASKS;
            if (high_words() == 1u) {
                let hp = vec4<u32>(h.x >> (8u * p));
                lo |= (hp * SPREAD5_A) & BIT4_MASKS;
                hi |= (hp * SPREAD5_B) & BIT4_MASKS;
            } else if (high_words() == 2u) {
                let hp = vec4<u32>(select(h.x, h.y, p >= 2u) >> (16u * (p % 2u)));
                lo |= (hp * SPREAD6_A) & BITS45_MASKS;
                hi |= (hp * SPREAD6_B) & BITS45_MASKS;
            }
            return Piece(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
        }
    }
}

// Small unsigned integers (< 2^31) to f32, through the signed conversion (cheaper on CPUs).
fn small_f32x2(v: vec2<u32>) -> vec2<f32> {
    return vec2<f32>(bitcast<vec2<i32>>(v));
}

// (d, dmin) of the block holding unit u of `row` (block-scaled types; zeros for the others).
fn block_dm(row: u32, u: u32) -> vec2<f32> {
    if (!block_scaled()) {
        return vec2<f32>(0.0);
    }
    return unpack2x16float(ws[(row * (COLS / 32u) + u) / 8u]);
}

// (d_a, off_a, d_b, off_b) of unit u of `row`: element = raw * raw_scale() * d + off, with slot
// a's pair for slot a (elements 0..15 of a nibble unit) and b's for slot b; the same pair twice
// unless split_slots(). Floats: (1, 0). K-quants form d * scale (and dmin * min) here in f32,
// as ggml does (exact: an f16 times an integer below 2^8).
fn unit_dm(row: u32, u: u32) -> vec4<f32> {
    return unit_dm_in(row, u, block_dm(row, u));
}

// unit_dm given the unit's block_dm.
fn unit_dm_in(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    let nb = COLS / 32u;
    let g = row * nb + u;
    switch WTYPE {
        case WT_Q8_0: {
            let b = row * nb + u / 2u;
            let d = unpack2x16float(ws[b / 2u])[b % 2u];
            return vec4<f32>(d, -128.0 * d, d, -128.0 * d);
        }
        case WT_Q4_0: {
            let d = unpack2x16float(ws[g / 2u])[g % 2u];
            return vec4<f32>(d, -8.0 * d, d, -8.0 * d);
        }
        case WT_Q4_1: { return unpack2x16float(ws[g]).xyxy; }
        case WT_Q5_0: {
            let d = unpack2x16float(ws[g / 2u])[g % 2u];
            return vec4<f32>(d, -16.0 * d, d, -16.0 * d);
        }
        case WT_Q5_1: { return unpack2x16float(ws[g]).xyxy; }
        case WT_Q4_K, WT_Q5_K: {
            // The unit's (scale, min) bytes: half g % 2 of word g / 2 after the block words.
            let pair = ws[all_units() / 8u + g / 2u];
            let v = select(pair >> 16u, pair, g % 2u == 0u);
            let dm = block * small_f32x2(vec2<u32>(v, v >> 8u) & vec2<u32>(0xffu));
            return vec4<f32>(dm.x, -dm.y, dm.x, -dm.y);
        }
        case WT_Q2_K: {
            let pair = ws[all_units() / 8u + g / 2u];
            let v = select(pair >> 16u, pair, g % 2u == 0u);
            let sm = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v, v >> 4u, v >> 8u, v >> 12u) & vec4<u32>(0xfu)));
            let dm = block.xyxy * sm;
            return vec4<f32>(dm.x, -dm.y, dm.z, -dm.w);
        }
        case WT_Q3_K, WT_Q6_K: {
            // [d | i8 scale of slot a | of slot b]; the raw quants are biased by 4 (32).
            let w = ws[g];
            let sc = vec2<f32>(bitcast<vec2<i32>>(vec2<u32>(w << 8u, w)) >> vec2<u32>(24u));
            let d = unpack2x16float(w).x * sc;
            let bias = select(-4.0, -32.0, WTYPE == WT_Q6_K);
            return vec4<f32>(d.x, bias * d.x, d.y, bias * d.y);
        }
        default: { return vec4<f32>(1.0, 0.0, 1.0, 0.0); }
    }
}

// The elements of piece p from its raw values (exact, see the top of the file).
fn piece_elements(raw: Piece, dm: vec4<f32>) -> Piece {
    let rs = raw_scale();
    return Piece(fma(raw.a, rs * dm.x, vec4<f32>(dm.y)), fma(raw.b, rs * dm.z, vec4<f32>(dm.w)));
}

// A piece's raw dot products with the scaled x (slot a with pa, slot b with pb): (a + b, 0), or
// (a, b) when the slots have their own scales.
fn piece_dots(raw: Piece, pa: vec4<f32>, pb: vec4<f32>) -> vec2<f32> {
    if (!nibble_unit()) {
        return vec2<f32>(dot(raw.a, pa), 0.0);
    }
    if (split_slots()) {
        return vec2<f32>(dot(raw.a, pa), dot(raw.b, pb));
    }
    return vec2<f32>(dot(raw.a, pa) + dot(raw.b, pb), 0.0);
}

// The x sums a unit's offsets multiply, in piece_dots' form: (sum over slot a + b, 0), or apart.
fn slot_sums(sum_a: f32, sum_b: f32) -> vec2<f32> {
    if (split_slots()) {
        return vec2<f32>(sum_a, sum_b);
    }
    return vec2<f32>(sum_a + sum_b, 0.0);
}

// sum_i element_i x_i over a unit from its raw dots (piece_dots summed over the pieces) and its
// x sums (slot_sums).
fn unit_dot(raw: vec2<f32>, dm: vec4<f32>, x_sum: vec2<f32>) -> f32 {
    if (!(nibble_unit() || WTYPE == WT_Q8_0)) {
        return dm.x * raw.x;
    }
    let a = fma(dm.x, raw.x, dm.y * x_sum.x);
    if (split_slots()) {
        return a + fma(dm.z, raw.y, dm.w * x_sum.y);
    }
    return a;
}
