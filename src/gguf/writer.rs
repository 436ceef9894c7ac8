//! GGUF v3 writer: used by tests to build models and by the converter. Tensor data is produced
//! one tensor at a time by a callback, so writing a big model never holds it all in memory.

use super::MetaValue;
use crate::quant::GgmlType;
use crate::Error;

pub struct GgufWriter {
    pub metadata: Vec<(String, MetaValue)>,
    /// (name, dims in GGUF order, type)
    pub tensors: Vec<(String, Vec<u64>, GgmlType)>,
    pub alignment: u64,
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { metadata: Vec::new(), tensors: Vec::new(), alignment: 32 }
    }

    pub fn add_meta(&mut self, key: &str, value: MetaValue) {
        self.metadata.push((key.to_string(), value));
    }

    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType) {
        self.tensors.push((name.to_string(), dims.to_vec(), ty));
    }

    /// Writes header, tensor table and data. `data(i)` returns the bytes of tensor `i`
    /// (exactly `ty.bytes_for(n_elements)` bytes), called once per tensor in order.
    /// A non-default `alignment` is recorded as `general.alignment` (u32) unless present.
    pub fn write<W: std::io::Write>(&self, out: &mut W, data: &mut dyn FnMut(usize) -> crate::Result<Vec<u8>>) -> crate::Result<()> {
        let align = self.alignment;
        if !align.is_power_of_two() || align > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!("GGUF alignment {align} is not a power of two")));
        }
        let mut metadata: Vec<(&str, std::borrow::Cow<'_, MetaValue>)> =
            self.metadata.iter().map(|(k, v)| (k.as_str(), std::borrow::Cow::Borrowed(v))).collect();
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) if v.as_u64() != Some(align) => {
                return Err(Error::InvalidArgument(format!("general.alignment {v:?} differs from the writer's {align}")))
            }
            Some(_) => {}
            None if align != 32 => metadata.push(("general.alignment", std::borrow::Cow::Owned(MetaValue::U32(align as u32)))),
            None => {}
        }

        // Sizes and aligned offsets first, so a bad tensor fails before anything is written.
        let mut sizes = Vec::with_capacity(self.tensors.len());
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0u64;
        for (name, dims, ty) in &self.tensors {
            let bad = |why: &str| Error::InvalidArgument(format!("tensor {name:?} {dims:?} {}: {why}", ty.name()));
            if dims.is_empty() || dims.len() > 4 || dims.contains(&0) {
                return Err(bad("needs 1 to 4 nonzero dimensions"));
            }
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(bad("row length is not a whole number of blocks"));
            }
            let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("element count overflows"))?;
            let size = ty.bytes_for(n).ok_or_else(|| bad("size overflows"))?;
            offsets.push(next);
            sizes.push(size);
            next = next.checked_add(size).and_then(|e| align_up(e, align)).ok_or_else(|| bad("file too large"))?;
        }

        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        put_u32(&mut header, 3);
        put_u64(&mut header, self.tensors.len() as u64);
        put_u64(&mut header, metadata.len() as u64);
        for (key, value) in &metadata {
            put_str(&mut header, key);
            put_u32(&mut header, value.ty().id());
            put_value(&mut header, value, key)?;
        }
        for ((name, dims, ty), off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut header, name);
            put_u32(&mut header, dims.len() as u32);
            for &d in dims {
                put_u64(&mut header, d);
            }
            put_u32(&mut header, ty.id());
            put_u64(&mut header, *off);
        }
        let padded = align_up(header.len() as u64, align).expect("header fits in memory") as usize;
        header.resize(padded, 0);
        out.write_all(&header)?;

        let mut pos = 0u64;
        for (i, ((name, _, _), (&off, &size))) in self.tensors.iter().zip(offsets.iter().zip(&sizes)).enumerate() {
            write_zeros(out, off - pos)?;
            let bytes = data(i)?;
            if bytes.len() as u64 != size {
                return Err(Error::InvalidArgument(format!("tensor {name:?}: data callback returned {} bytes, expected {size}", bytes.len())));
            }
            out.write_all(&bytes)?;
            pos = off + size;
        }
        // Pad the end too, so the file length is a multiple of the alignment as ggml writes it.
        write_zeros(out, next - pos)?;
        Ok(())
    }
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

fn write_zeros<W: std::io::Write>(out: &mut W, n: u64) -> crate::Result<()> {
    const Z: [u8; 64] = [0; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(64);
        out.write_all(&Z[..k as usize])?;
        left -= k;
    }
    Ok(())
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue, key: &str) -> crate::Result<()> {
    match v {
        MetaValue::U8(x) => b.push(*x),
        MetaValue::I8(x) => b.push(*x as u8),
        MetaValue::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(*x as u8),
        MetaValue::String(s) => put_str(b, s),
        MetaValue::Array { elem, values } => {
            put_u32(b, elem.id());
            put_u64(b, values.len() as u64);
            for x in values {
                // GGUF arrays are homogeneous: the element type is written once.
                if x.ty() != *elem {
                    return Err(Error::InvalidArgument(format!("metadata {key:?}: array of {elem:?} holds a {:?}", x.ty())));
                }
                put_value(b, x, key)?;
            }
        }
    }
    Ok(())
}
