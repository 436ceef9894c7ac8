//! SentencePiece-style BPE over a `llama` vocabulary, as llama.cpp's SPM tokenizer does it:
//! start from single UTF-8 characters and repeatedly merge the adjacent pair whose concatenation
//! is the vocabulary token with the highest score (ties: leftmost pair). Characters left unmerged
//! that are not tokens become byte-fallback tokens `<0xNN>`.
//!
//! Why not `tokenizers`' BPE: it ranks merges by a fixed merge list, not by the score of the
//! merged token with leftmost tie-breaking, so equal-score cases could differ from llama.cpp.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

struct Symbol {
    /// Byte range in the text; `len == 0` once merged into its left neighbour.
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the merged text: a stale entry (a side merged meanwhile) no longer matches.
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
    }
}

/// Appends the ids of `text` (already with spaces escaped as "▁" and the dummy prefix added).
pub(super) fn tokenize(vocab: &Vocab, byte_ids: &[Option<u32>; 256], text: &str, out: &mut Vec<u32>) {
    let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        syms.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: None });
    }
    let n = syms.len();
    for (i, s) in syms.iter_mut().enumerate() {
        s.next = if i + 1 < n { Some(i + 1) } else { None };
    }

    let mut heap = BinaryHeap::new();
    let try_add = |syms: &[Symbol], heap: &mut BinaryHeap<Bigram>, left: Option<usize>, right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else { return };
        let (a, b) = (&syms[l], &syms[r]);
        let merged = &text[a.start..b.start + b.len];
        if let Some(id) = vocab.get(merged) {
            heap.push(Bigram { left: l, right: r, score: vocab.scores[id as usize], len: merged.len() });
        }
    };
    for i in 1..n {
        try_add(&syms, &mut heap, Some(i - 1), Some(i));
    }

    while let Some(bg) = heap.pop() {
        let (l, r) = (bg.left, bg.right);
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.len {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        let after = syms[r].next;
        syms[l].next = after;
        if let Some(a) = after {
            syms[a].prev = Some(l);
        }
        try_add(&syms, &mut heap, syms[l].prev, Some(l));
        try_add(&syms, &mut heap, Some(l), after);
    }

    let mut i = if n > 0 { Some(0) } else { None };
    while let Some(k) = i {
        let s = &syms[k];
        let piece = &text[s.start..s.start + s.len];
        match vocab.get(piece) {
            Some(id) => out.push(id),
            // Only unmerged single characters can miss: merges always form vocabulary tokens.
            None => {
                for b in piece.bytes() {
                    if let Some(id) = byte_ids[b as usize].or(vocab.unk_id) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}

/// Byte-fallback ids: `<0xNN>`, else the single-byte token (llama.cpp's `byte_to_token`).
pub(super) fn byte_ids(vocab: &Vocab) -> [Option<u32>; 256] {
    let mut ids = [None; 256];
    for (b, slot) in ids.iter_mut().enumerate() {
        *slot = vocab.get(&format!("<0x{b:02X}>")).or_else(|| if b < 128 { vocab.get(&(b as u8 as char).to_string()) } else { None });
    }
    ids
}
