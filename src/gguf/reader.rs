//! Bounds-checked GGUF parser.
//!
//! Every read goes through [`Cursor`], which fails with `Truncated` instead of slicing out of
//! range, and every count is compared with the bytes left in the file before anything is
//! allocated for it: a hostile header costs at most a small multiple of the file size.

use std::collections::HashSet;

use super::{GgufError, MetaType, MetaValue, TensorInfo};
use crate::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
/// Arrays of arrays deeper than this are rejected (real files use depth 1).
const MAX_DEPTH: usize = 4;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Cap on metadata values held in memory (each is ~32 bytes): far above any real vocabulary
/// (~260k tokens, ~500k merges), far below what would exhaust a browser's wasm heap.
const MAX_META_VALUES: u64 = 1 << 24;
/// Minimum bytes of one key/value pair: key length (8) + value type (4) + 1-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Minimum bytes of one tensor info: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 32;

#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    /// In file order.
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment` or 32.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    /// The whole file's size: counts are judged against it (a prefix of the file may be all
    /// that `bytes` holds, see [`GgufFile::parse_prefix`]).
    file_len: u64,
    pos: usize,
    /// Metadata values allocated so far (see MAX_META_VALUES).
    n_values: u64,
}

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.file_len
    }

    fn remaining(&self) -> u64 {
        self.file_len - self.pos as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err(GgufError::Truncated { offset: self.pos as u64, needed: n, len: self.len() });
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Fails unless `count` items of at least `min_each` bytes could fit in what is left.
    fn check_count(&self, what: &'static str, count: u64, min_each: u64) -> Result<(), GgufError> {
        match count.checked_mul(min_each) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(GgufError::ImplausibleCount { what, count, len: self.len() }),
        }
    }

    /// A GGUF string: u64 byte length then UTF-8 bytes. `what` names it in errors.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let n = self.u64()?;
        if n > self.remaining() {
            return Err(GgufError::Truncated { offset: self.pos as u64, needed: n, len: self.len() });
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| GgufError::InvalidUtf8(what()))
    }

    fn value(&mut self, ty: MetaType, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        self.n_values += 1;
        if self.n_values > MAX_META_VALUES {
            return Err(GgufError::ImplausibleCount { what: "metadata value", count: self.n_values, len: self.len() });
        }
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.u8()?),
            MetaType::I8 => MetaValue::I8(self.u8()? as i8),
            MetaType::U16 => MetaValue::U16(self.u16()?),
            MetaType::I16 => MetaValue::I16(self.u16()? as i16),
            MetaType::U32 => MetaValue::U32(self.u32()?),
            MetaType::I32 => MetaValue::I32(self.u32()? as i32),
            MetaType::F32 => MetaValue::F32(f32::from_bits(self.u32()?)),
            MetaType::U64 => MetaValue::U64(self.u64()?),
            MetaType::I64 => MetaValue::I64(self.u64()? as i64),
            MetaType::F64 => MetaValue::F64(f64::from_bits(self.u64()?)),
            MetaType::Bool => match self.u8()? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(GgufError::BadMetadata { key: key.to_string(), reason: format!("bool byte {b}") }),
            },
            MetaType::String => MetaValue::String(self.string(&|| format!("metadata value of {key:?}"))?),
            MetaType::Array => {
                if depth >= MAX_DEPTH {
                    return Err(GgufError::TooDeep(key.to_string()));
                }
                let elem_id = self.u32()?;
                let elem = MetaType::from_id(elem_id).ok_or(GgufError::UnknownValueType(elem_id))?;
                let count = self.u64()?;
                self.check_count("array element", count, elem.min_encoded_len())?;
                if self.n_values.saturating_add(count) > MAX_META_VALUES {
                    return Err(GgufError::ImplausibleCount { what: "array element", count, len: self.len() });
                }
                let mut values = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    values.push(self.value(elem, key, depth + 1)?);
                }
                MetaValue::Array { elem, values }
            }
        })
    }
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    // `align` is a nonzero power of two.
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

impl GgufFile {
    /// Parses a whole GGUF file held in memory; every tensor is checked to lie inside `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, GgufError> {
        Self::parse_with_len(bytes, bytes.len() as u64)
    }

    /// Parses the header and tables from the first bytes of a `file_len`-byte file, as a
    /// download delivers them: `Ok(None)` while the tables reach past `prefix` (call again with
    /// more), the same checks and errors as [`GgufFile::parse`] otherwise (tensors are checked
    /// to lie inside `file_len`).
    pub fn parse_prefix(prefix: &[u8], file_len: u64) -> Result<Option<Self>, GgufError> {
        if prefix.len() as u64 > file_len {
            return Err(GgufError::Truncated { offset: 0, needed: prefix.len() as u64, len: file_len });
        }
        match Self::parse_with_len(prefix, file_len) {
            // Past the prefix but inside the file: more bytes are on their way.
            Err(GgufError::Truncated { offset, needed, .. }) if (prefix.len() as u64) < file_len && offset.saturating_add(needed) <= file_len => Ok(None),
            r => r.map(Some),
        }
    }

    fn parse_with_len(bytes: &[u8], file_len: u64) -> Result<Self, GgufError> {
        let mut c = Cursor { bytes, file_len, pos: 0, n_values: 0 };
        if c.take(4)? != MAGIC {
            return Err(GgufError::BadMagic);
        }
        // v2 and v3 share the little-endian layout (v3 only added big-endian files, whose
        // version then reads as 0x03000000 here and is rejected).
        let version = c.u32()?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        // Both tables must fit in the rest of the file together.
        let need = n_kv.checked_mul(MIN_KV_BYTES).and_then(|a| n_tensors.checked_mul(MIN_TENSOR_INFO_BYTES).and_then(|b| a.checked_add(b)));
        if need.is_none_or(|n| n > c.remaining()) {
            let (what, count) =
                if n_kv.checked_mul(MIN_KV_BYTES).is_none_or(|n| n > c.remaining()) { ("metadata key/value", n_kv) } else { ("tensor", n_tensors) };
            return Err(GgufError::ImplausibleCount { what, count, len: c.len() });
        }

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut keys = HashSet::new();
        for _ in 0..n_kv {
            let key = c.string(&|| "metadata key".to_string())?;
            let ty_id = c.u32()?;
            let ty = MetaType::from_id(ty_id).ok_or(GgufError::UnknownValueType(ty_id))?;
            let value = c.value(ty, &key, 0)?;
            if !keys.insert(key.clone()) {
                return Err(GgufError::Duplicate { what: "metadata key", name: key });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => 32,
            Some((k, v)) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 30 => a,
                _ => return Err(GgufError::BadMetadata { key: k.clone(), reason: format!("alignment {v:?} is not a power of two") }),
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = HashSet::new();
        for _ in 0..n_tensors {
            let t = read_tensor_info(&mut c, alignment)?;
            if !names.insert(t.name.clone()) {
                return Err(GgufError::Duplicate { what: "tensor", name: t.name });
            }
            tensors.push(t);
        }

        let data_offset = align_up(c.pos as u64, alignment).expect("pos is small");
        for t in &tensors {
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
            if end.is_none_or(|e| e > c.len()) {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    reason: format!("data [{} + {}, {} bytes] lies outside the {}-byte file", data_offset, t.offset, t.n_bytes, c.len()),
                });
            }
        }
        Ok(GgufFile { version, metadata, tensors, alignment, data_offset })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Any integer value that fits in u64 (GGUF writers disagree on integer widths).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Array of strings (e.g. tokenizer.ggml.tokens / merges).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?.as_array()?.iter().map(|v| v.as_str()).collect()
    }

    /// Array of numbers converted to f32 (e.g. tokenizer.ggml.scores).
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get(key)?.as_array()?.iter().map(|v| v.as_f32()).collect()
    }

    /// Array of integers converted to i64 (e.g. tokenizer.ggml.token_type).
    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get(key)?.as_array()?.iter().map(|v| v.as_i64()).collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor inside the file the header was parsed from.
    /// Panics if `file` is not (a prefix-compatible copy of) the file this header came from;
    /// use [`GgufFile::try_tensor_data`] when that is not guaranteed.
    pub fn tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        self.try_tensor_data(file, t).expect("tensor_data: bytes are not the parsed file")
    }

    /// Like [`GgufFile::tensor_data`], but None when the tensor does not lie inside `file`.
    pub fn try_tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> Option<&'a [u8]> {
        let start = usize::try_from(self.data_offset.checked_add(t.offset)?).ok()?;
        let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
        file.get(start..end)
    }
}

fn read_tensor_info(c: &mut Cursor<'_>, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = c.string(&|| "tensor name".to_string())?;
    let bad = |reason: String| GgufError::BadTensor { name: name.clone(), reason };
    let n_dims = c.u32()?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad(format!("{n_dims} dimensions (1..={MAX_DIMS} supported)")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64()?);
    }
    let type_id = c.u32()?;
    let offset = c.u64()?;
    if dims.contains(&0) {
        return Err(bad(format!("zero-sized dimension in {dims:?}")));
    }
    // ggml keeps element counts in int64_t.
    let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= i64::MAX as u64);
    let n = n.ok_or_else(|| bad(format!("element count of {dims:?} overflows")))?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType { name: name.clone(), type_id })?;
    if dims[0] % ty.block_len() as u64 != 0 {
        return Err(bad(format!("row length {} is not a multiple of the {} block length {}", dims[0], ty.name(), ty.block_len())));
    }
    let n_bytes = ty.bytes_for(n).ok_or_else(|| bad(format!("{} bytes of {n} {} elements overflow", ty.name(), ty.name())))?;
    if offset % alignment != 0 {
        return Err(bad(format!("offset {offset} is not a multiple of the alignment {alignment}")));
    }
    Ok(TensorInfo { name, dims, ty, offset, n_bytes })
}
