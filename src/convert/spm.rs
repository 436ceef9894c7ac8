//! SentencePiece's tokenizer.model: a protobuf `ModelProto`. We decode only the fields the GGUF
//! needs - the pieces (text, score, type), the special ids in `trainer_spec` and the whitespace
//! flags in `normalizer_spec` - with a small wire-format reader (varints and length prefixes).

use crate::{Error, Result};

/// SentencePiece piece types; llama.cpp's token_type uses the same numbers.
pub(crate) const NORMAL: i32 = 1;
pub(crate) const UNKNOWN: i32 = 2;
pub(crate) const CONTROL: i32 = 3;
pub(crate) const USER_DEFINED: i32 = 4;
pub(crate) const UNUSED: i32 = 5;
pub(crate) const BYTE: i32 = 6;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpmModel {
    pub pieces: Vec<(String, f32, i32)>,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

fn bad(msg: &str) -> Error {
    Error::Convert(format!("tokenizer.model: {msg}"))
}

/// One protobuf field: number and payload.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            if shift < 64 {
                v |= ((byte & 0x7f) as u64) << shift;
            }
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| bad("truncated field"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("field too long"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap())),
            w => return Err(bad(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(b: &[u8]) -> Reader<'_> {
    Reader { b, pos: 0 }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<SpmModel> {
    let mut m = SpmModel { pieces: Vec::new(), unk_id: 0, bos_id: 1, eos_id: 2, pad_id: -1, add_dummy_prefix: true, remove_extra_whitespaces: true };
    let mut r = fields(bytes);
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(p)) => m.pieces.push(parse_piece(p)?),
            (2, Field::Bytes(t)) => {
                let mut r = fields(t);
                while let Some((num, f)) = r.next()? {
                    // int32 fields: negative values arrive as 64-bit two's complement varints.
                    if let Field::Varint(v) = f {
                        match num {
                            40 => m.unk_id = v as i64 as i32,
                            41 => m.bos_id = v as i64 as i32,
                            42 => m.eos_id = v as i64 as i32,
                            43 => m.pad_id = v as i64 as i32,
                            _ => {}
                        }
                    }
                }
            }
            (3, Field::Bytes(n)) => {
                let mut r = fields(n);
                while let Some((num, f)) = r.next()? {
                    match (num, f) {
                        (3, Field::Varint(v)) => m.add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => m.remove_extra_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if m.pieces.is_empty() {
        return Err(bad("no pieces (is this a SentencePiece model?)"));
    }
    Ok(m)
}

fn parse_piece(b: &[u8]) -> Result<(String, f32, i32)> {
    let (mut piece, mut score, mut ty) = (None, 0f32, NORMAL);
    let mut r = fields(b);
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(s)) => piece = Some(String::from_utf8(s.to_vec()).map_err(|_| bad("piece is not UTF-8"))?),
            (2, Field::Fixed32(s)) => score = f32::from_bits(s),
            (3, Field::Varint(t)) => ty = t as i32,
            _ => {}
        }
    }
    if !(NORMAL..=BYTE).contains(&ty) {
        return Err(bad(&format!("unknown piece type {ty}")));
    }
    Ok((piece.ok_or_else(|| bad("piece without text"))?, score, ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn parses_pieces_and_special_ids() {
        let mut proto = Vec::new();
        for (text, score, ty) in [("<unk>", 0.0f32, 2u64), ("▁hi", -1.5, 1)] {
            let mut p = Vec::new();
            bytes_field(1, text.as_bytes(), &mut p);
            varint(2 << 3 | 5, &mut p);
            p.extend_from_slice(&score.to_le_bytes());
            varint(3 << 3, &mut p);
            varint(ty, &mut p);
            bytes_field(1, &p, &mut proto);
        }
        let mut trainer = Vec::new();
        varint(43 << 3, &mut trainer);
        varint(-1i64 as u64, &mut trainer); // pad_id = -1, a 10-byte varint
        varint(41 << 3, &mut trainer);
        varint(7, &mut trainer);
        bytes_field(2, &trainer, &mut proto);
        let mut norm = Vec::new();
        varint(3 << 3, &mut norm);
        varint(0, &mut norm);
        bytes_field(3, &norm, &mut proto);

        let m = parse(&proto).unwrap();
        assert_eq!(m.pieces, vec![("<unk>".to_string(), 0.0, 2), ("▁hi".to_string(), -1.5, 1)]);
        assert_eq!((m.unk_id, m.bos_id, m.eos_id, m.pad_id), (0, 7, 2, -1));
        assert!(!m.add_dummy_prefix);
        assert!(m.remove_extra_whitespaces);
        assert!(parse(&proto[..proto.len() - 1]).is_err());
    }
}
