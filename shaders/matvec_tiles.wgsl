// The tile path of matvec.wgsl (TT = MATVEC_TILE tokens, 4 rows per group): each weight decoded
// once per tile and used for every token of it.

// The decoded elements of one piece for the tile's four rows.
struct Rows4 {
    a0: vec4<act_t>, a1: vec4<act_t>, a2: vec4<act_t>, a3: vec4<act_t>,
    b0: vec4<act_t>, b1: vec4<act_t>, b2: vec4<act_t>, b3: vec4<act_t>,
}

struct TokenDots {
    d: vec4<f32>,  // the four rows
    ss: f32,       // this piece's part of sum x²
}

// Token t's x for piece p of the unit starting at x vec4 xv, against the four rows (whose
// elements already carry the norm weight g).
fn token_dots(t: u32, xv: u32, p: u32, w: Rows4) -> TokenDots {
    let xa = load_x4(t, xv + p);
    var xb = vec4<f32>(0.0);
    if (nibble_unit()) {
        xb = load_x4(t, xv + p + 4u);
    }
    var ss = 0.0;
    if (NORM) {
        ss = dot(xa, xa) + dot(xb, xb);
    }
    let ha = vec4<act_t>(xa);
    var d = vec4<f32>(f32(dot(w.a0, ha)), f32(dot(w.a1, ha)), f32(dot(w.a2, ha)), f32(dot(w.a3, ha)));
    if (nibble_unit()) {
        let hb = vec4<act_t>(xb);
        d += vec4<f32>(f32(dot(w.b0, hb)), f32(dot(w.b1, hb)), f32(dot(w.b2, hb)), f32(dot(w.b3, hb)));
    }
    return TokenDots(d, ss);
}

// Tiles: rows first_row..first_row+4 against tokens t0..t0+nt; this lane's units only.
fn products_tile(lane: u32, first_row: u32, t0: u32, nt: u32) -> Acc {
    let r0 = min(first_row, ROWS - 1u);
    let r1 = min(first_row + 1u, ROWS - 1u);
    let r2 = min(first_row + 2u, ROWS - 1u);
    let r3 = min(first_row + 3u, ROWS - 1u);
    var acc: Acc;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        let q0 = wq[r0 * ROW_UNITS + u];
        let q1 = wq[r1 * ROW_UNITS + u];
        let q2 = wq[r2 * ROW_UNITS + u];
        let q3 = wq[r3 * ROW_UNITS + u];
        let dm0 = unit_dm(r0, u);
        let dm1 = unit_dm(r1, u);
        let dm2 = unit_dm(r2, u);
        let dm3 = unit_dm(r3, u);
        let h0 = unit_high(r0, u);
        let h1 = unit_high(r1, u);
        let h2 = unit_high(r2, u);
        let h3 = unit_high(r3, u);
        let xv = u * (epu() / 4u);
        for (var p = 0u; p < pieces(); p++) {
            // Decode each weight once (times the norm weight: (x * g)·w = x·(g * w)); it serves
            // every token of the tile.
            var ga = vec4<f32>(1.0);
            var gb = vec4<f32>(1.0);
            if (NORM) {
                ga = load_g4(xv + p);
                if (nibble_unit()) {
                    gb = load_g4(xv + p + 4u);
                }
            }
            let e0 = piece_elements(piece_raw(q0, h0, p), dm0);
            let e1 = piece_elements(piece_raw(q1, h1, p), dm1);
            let e2 = piece_elements(piece_raw(q2, h2, p), dm2);
            let e3 = piece_elements(piece_raw(q3, h3, p), dm3);
            let w = Rows4(vec4<act_t>(e0.a * ga), vec4<act_t>(e1.a * ga), vec4<act_t>(e2.a * ga), vec4<act_t>(e3.a * ga),
                          vec4<act_t>(e0.b * gb), vec4<act_t>(e1.b * gb), vec4<act_t>(e2.b * gb), vec4<act_t>(e3.b * gb));
            var r = token_dots(t0, xv, p, w);
            acc.a0 += r.d;
            acc.ss0.x += r.ss;
            if (TT > 1u && nt > 1u) { r = token_dots(t0 + 1u, xv, p, w); acc.a1 += r.d; acc.ss0.y += r.ss; }
            if (TT > 2u && nt > 2u) { r = token_dots(t0 + 2u, xv, p, w); acc.a2 += r.d; acc.ss0.z += r.ss; }
            if (TT > 3u && nt > 3u) { r = token_dots(t0 + 3u, xv, p, w); acc.a3 += r.d; acc.ss0.w += r.ss; }
            if (TT > 4u && nt > 4u) { r = token_dots(t0 + 4u, xv, p, w); acc.a4 += r.d; acc.ss1.x += r.ss; }
            if (TT > 5u && nt > 5u) { r = token_dots(t0 + 5u, xv, p, w); acc.a5 += r.d; acc.ss1.y += r.ss; }
            if (TT > 6u && nt > 6u) { r = token_dots(t0 + 6u, xv, p, w); acc.a6 += r.d; acc.ss1.z += r.ss; }
            if (TT > 7u && nt > 7u) { r = token_dots(t0 + 7u, xv, p, w); acc.a7 += r.d; acc.ss1.w += r.ss; }
        }
    }
    return acc;
}
