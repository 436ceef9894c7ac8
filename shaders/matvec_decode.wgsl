// The decode path of matvec.wgsl (TT = 1): one token, R rows per group, in two loop orders
// (UNIT_X) for the two software JITs; the GPU form uses "by unit" with R = 4.

// sum raw_i * px_i of piece p of unit w (high-bit words h), px = x * raw_scale(), in
// piece_dots' form (slot b: nibble units).
fn raw_dot(w: vec4<u32>, h: vec2<u32>, p: u32, pa: vec4<f32>, pb: vec4<f32>) -> vec2<f32> {
    return piece_dots(piece_raw(w, h, p), pa, pb);
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// One unit's x for the decode path, read once and used by every row of the group: normalised
// (x * g), then scaled for raw dots (piece p: slot a in a<p>, slot b in b<p>), with the sums of
// the normalised values (for the unit's offsets: slots a and b apart when split_slots(), else
// their total and 0) and this unit's part of sum x² (NORM).
struct UnitX {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
    sums: vec2<f32>,
    ss: f32,
}

// x vec4 v of token t, and its square sum and product with g when NORM.
fn normed_x4(t: u32, v: u32, ss: ptr<function, f32>) -> vec4<f32> {
    let x = load_x4(t, v);
    if (!NORM) {
        return x;
    }
    *ss += dot(x, x);
    return x * load_g4(v);
}

fn unit_x(t: u32, u: u32) -> UnitX {
    var x: UnitX;
    var ss = 0.0;
    let v = u * (epu() / 4u);  // the unit's first x vec4
    let n = pieces();
    x.a0 = normed_x4(t, v, &ss);
    if (n > 1u) { x.a1 = normed_x4(t, v + 1u, &ss); }
    if (n > 2u) { x.a2 = normed_x4(t, v + 2u, &ss); x.a3 = normed_x4(t, v + 3u, &ss); }
    if (nibble_unit()) {
        x.b0 = normed_x4(t, v + 4u, &ss);
        x.b1 = normed_x4(t, v + 5u, &ss);
        x.b2 = normed_x4(t, v + 6u, &ss);
        x.b3 = normed_x4(t, v + 7u, &ss);
    }
    let sa = (x.a0 + x.a1) + (x.a2 + x.a3);
    let sb = (x.b0 + x.b1) + (x.b2 + x.b3);
    if (split_slots()) {
        x.sums = vec2<f32>(hsum(sa), hsum(sb));
    } else {
        x.sums = vec2<f32>(hsum(sa + sb), 0.0);
    }
    x.ss = ss;
    let rs = raw_scale();
    x.a0 *= rs; x.a1 *= rs; x.a2 *= rs; x.a3 *= rs;
    x.b0 *= rs; x.b1 *= rs; x.b2 *= rs; x.b3 *= rs;
    return x;
}

// sum_i element_i x_i over unit u of `row`, whose block_dm is `block`.
fn row_unit(row: u32, u: u32, x: UnitX, block: vec2<f32>) -> f32 {
    let w = wq[row * ROW_UNITS + u];
    let h = unit_high(row, u);
    let n = pieces();
    var s = raw_dot(w, h, 0u, x.a0, x.b0);
    if (n > 1u) { s += raw_dot(w, h, 1u, x.a1, x.b1); }
    if (n > 2u) { s += raw_dot(w, h, 2u, x.a2, x.b2) + raw_dot(w, h, 3u, x.a3, x.b3); }
    return unit_dot(s, unit_dm_in(row, u, block), x.sums);
}

// The block_dm of four rows.
struct QuadBlocks {
    x: vec2<f32>, y: vec2<f32>, z: vec2<f32>, w: vec2<f32>,
}

fn quad_blocks(r: vec4<u32>, u: u32) -> QuadBlocks {
    return QuadBlocks(block_dm(r.x, u), block_dm(r.y, u), block_dm(r.z, u), block_dm(r.w, u));
}

// Whether the by-unit order keeps unit u's block words from an earlier unit rather than reading
// them: with one lane per row group its units are consecutive, so a block's 8 units follow each
// other. Measured (bench_matmul --types): on lavapipe this saves one of the unit's gathers; the
// by-piece order (SwiftShader) reads them per unit, as state kept across its iterations cost
// more there than the loads. Lanes > 1 (GPUs) read them per unit, from cache.
fn hoist_blocks(u: u32) -> bool {
    return block_scaled() && LANES == 1u && u % 8u != 0u;
}

// Unit u of four rows (clamped row indices r, block_dm b) against x.
fn quad_unit(r: vec4<u32>, u: u32, x: UnitX, b: QuadBlocks) -> vec4<f32> {
    return vec4<f32>(row_unit(r.x, u, x, b.x), row_unit(r.y, u, x, b.y), row_unit(r.z, u, x, b.z), row_unit(r.w, u, x, b.w));
}

// Rows first + 4k .. first + 4k + 3, clamped (rows past the end are loaded as the last row and
// dropped when storing).
fn quad_rows(first: u32, k: u32) -> vec4<u32> {
    return min(vec4<u32>(first + 4u * k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(ROWS - 1u));
}

// Decode, one piece at a time: x of a piece (in registers) meets the piece's weights of every
// row (loaded as whole units before the pieces). Fewer live values than unit_x: SwiftShader's
// Subzero JIT runs this form faster, lavapipe's LLVM the other.
fn products_one_by_piece(lane: u32, first_row: u32, t: u32) -> Acc {
    let rq0 = quad_rows(first_row, 0u);
    let rq1 = quad_rows(first_row, 1u);
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    var ss = 0.0;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        let q0 = wq[rq0.x * ROW_UNITS + u];
        let q1 = wq[rq0.y * ROW_UNITS + u];
        let q2 = wq[rq0.z * ROW_UNITS + u];
        let q3 = wq[rq0.w * ROW_UNITS + u];
        let h0 = unit_high(rq0.x, u);
        let h1 = unit_high(rq0.y, u);
        let h2 = unit_high(rq0.z, u);
        let h3 = unit_high(rq0.w, u);
        var q4 = vec4<u32>(0u);
        var q5 = vec4<u32>(0u);
        var q6 = vec4<u32>(0u);
        var q7 = vec4<u32>(0u);
        var h4 = vec2<u32>(0u);
        var h5 = vec2<u32>(0u);
        var h6 = vec2<u32>(0u);
        var h7 = vec2<u32>(0u);
        if (R > 4u) {
            q4 = wq[rq1.x * ROW_UNITS + u];
            q5 = wq[rq1.y * ROW_UNITS + u];
            q6 = wq[rq1.z * ROW_UNITS + u];
            q7 = wq[rq1.w * ROW_UNITS + u];
            h4 = unit_high(rq1.x, u);
            h5 = unit_high(rq1.y, u);
            h6 = unit_high(rq1.z, u);
            h7 = unit_high(rq1.w, u);
        }
        let xv = u * (epu() / 4u);  // the unit's first x vec4
        // Raw dots of the 4 + 4 rows (slot a, or both slots), and slot b's when split_slots().
        var d_lo = vec4<f32>(0.0);
        var d_hi = vec4<f32>(0.0);
        var d_lo_b = vec4<f32>(0.0);
        var d_hi_b = vec4<f32>(0.0);
        var sxa = vec4<f32>(0.0);
        var sxb = vec4<f32>(0.0);
        for (var p = 0u; p < pieces(); p++) {
            let xa = normed_x4(t, xv + p, &ss);
            var xb = vec4<f32>(0.0);
            if (nibble_unit()) {
                xb = normed_x4(t, xv + p + 4u, &ss);
            }
            if (split_slots()) {
                sxa += xa;
                sxb += xb;
            } else {
                sxa += xa + xb;
            }
            let pa = xa * raw_scale();
            let pb = xb * raw_scale();
            let r0 = raw_dot(q0, h0, p, pa, pb);
            let r1 = raw_dot(q1, h1, p, pa, pb);
            let r2 = raw_dot(q2, h2, p, pa, pb);
            let r3 = raw_dot(q3, h3, p, pa, pb);
            d_lo += vec4<f32>(r0.x, r1.x, r2.x, r3.x);
            if (split_slots()) {
                d_lo_b += vec4<f32>(r0.y, r1.y, r2.y, r3.y);
            }
            if (R > 4u) {
                let r4 = raw_dot(q4, h4, p, pa, pb);
                let r5 = raw_dot(q5, h5, p, pa, pb);
                let r6 = raw_dot(q6, h6, p, pa, pb);
                let r7 = raw_dot(q7, h7, p, pa, pb);
                d_hi += vec4<f32>(r4.x, r5.x, r6.x, r7.x);
                if (split_slots()) {
                    d_hi_b += vec4<f32>(r4.y, r5.y, r6.y, r7.y);
                }
            }
        }
        let s = vec2<f32>(sxa.x + sxa.y + sxa.z + sxa.w, sxb.x + sxb.y + sxb.z + sxb.w);
        lo += vec4<f32>(unit_dot(vec2<f32>(d_lo.x, d_lo_b.x), unit_dm(rq0.x, u), s), unit_dot(vec2<f32>(d_lo.y, d_lo_b.y), unit_dm(rq0.y, u), s),
                        unit_dot(vec2<f32>(d_lo.z, d_lo_b.z), unit_dm(rq0.z, u), s), unit_dot(vec2<f32>(d_lo.w, d_lo_b.w), unit_dm(rq0.w, u), s));
        if (R > 4u) {
            hi += vec4<f32>(unit_dot(vec2<f32>(d_hi.x, d_hi_b.x), unit_dm(rq1.x, u), s), unit_dot(vec2<f32>(d_hi.y, d_hi_b.y), unit_dm(rq1.y, u), s),
                            unit_dot(vec2<f32>(d_hi.z, d_hi_b.z), unit_dm(rq1.z, u), s), unit_dot(vec2<f32>(d_hi.w, d_hi_b.w), unit_dm(rq1.w, u), s));
        }
    }
    var acc: Acc;
    acc.a0 = lo;
    acc.a1 = hi;
    acc.ss0 = vec4<f32>(ss, 0.0, 0.0, 0.0);
    return acc;
}

// Decode, one unit at a time: the unit's x is read and normalised once (unit_x) for all R rows
// (R = 4, 8 or 16: one to four quads), each row's unit decoded whole.
fn products_one_by_unit(lane: u32, first_row: u32, t: u32) -> Acc {
    let rq0 = quad_rows(first_row, 0u);
    let rq1 = quad_rows(first_row, 1u);
    let rq2 = quad_rows(first_row, 2u);
    let rq3 = quad_rows(first_row, 3u);
    var acc: Acc;
    var ss = 0.0;
    var b0: QuadBlocks;
    var b1: QuadBlocks;
    var b2: QuadBlocks;
    var b3: QuadBlocks;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        if (!hoist_blocks(u)) {
            b0 = quad_blocks(rq0, u);
            if (R > 4u) { b1 = quad_blocks(rq1, u); }
            if (R > 8u) { b2 = quad_blocks(rq2, u); b3 = quad_blocks(rq3, u); }
        }
        let x = unit_x(t, u);
        ss += x.ss;
        acc.a0 += quad_unit(rq0, u, x, b0);
        if (R > 4u) { acc.a1 += quad_unit(rq1, u, x, b1); }
        if (R > 8u) { acc.a2 += quad_unit(rq2, u, x, b2); acc.a3 += quad_unit(rq3, u, x, b3); }
    }
    acc.ss0 = vec4<f32>(ss, 0.0, 0.0, 0.0);
    return acc;
}

// Decode: rows first_row..first_row+R against token t; this lane's units only.
fn products_one(lane: u32, first_row: u32, t: u32) -> Acc {
    if (UNIT_X) {
        return products_one_by_unit(lane, first_row, t);
    }
    return products_one_by_piece(lane, first_row, t);
}
