//! Splitting text around special tokens written in it, as llama.cpp's `tokenizer_st_partition`
//! with parse_special = true: for each special token, longest first, every occurrence inside the
//! still-unsplit text fragments becomes that token. The remaining text fragments are tokenised
//! by the model (SPM or BPE) one by one.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fragment {
    /// Byte range of the input text.
    Text(usize, usize),
    Token(u32),
}

/// `specials` are (id, text) in matching order (longest first).
pub(super) fn partition<'a>(text: &str, specials: impl Iterator<Item = (u32, &'a str)>) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0, text.len())];
    for (id, needle) in specials {
        if needle.is_empty() {
            continue;
        }
        // Cheap pre-check: most special tokens do not occur at all.
        if !text.contains(needle) {
            continue;
        }
        let mut out = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            let Fragment::Text(mut start, end) = f else {
                out.push(f);
                continue;
            };
            while let Some(pos) = text[start..end].find(needle) {
                let m = start + pos;
                if m > start {
                    out.push(Fragment::Text(start, m));
                }
                out.push(Fragment::Token(id));
                start = m + needle.len();
            }
            if start < end {
                out.push(Fragment::Text(start, end));
            }
        }
        frags = out;
    }
    frags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_longest_first_and_keeps_text_between() {
        let text = "<|im_start|>user\nhi<|im_end|><|im_end|>x";
        let specials = [(2u32, "<|im_start|>"), (3, "<|im_end|>"), (9, "<|")];
        let f = partition(text, specials.iter().map(|&(i, s)| (i, s)));
        assert_eq!(f, vec![Fragment::Token(2), Fragment::Text(12, 19), Fragment::Token(3), Fragment::Token(3), Fragment::Text(39, 40)]);
        assert_eq!(&text[12..19], "user\nhi");
        // The shorter "<|" only matches where no longer token did.
        let f = partition("a<|b", specials.iter().map(|&(i, s)| (i, s)));
        assert_eq!(f, vec![Fragment::Text(0, 1), Fragment::Token(9), Fragment::Text(3, 4)]);
        assert!(partition("", specials.iter().map(|&(i, s)| (i, s))).is_empty());
    }
}
