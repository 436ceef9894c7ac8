//! One index over the checkpoint's tensors, whatever their container: model.safetensors,
//! sharded safetensors (model.safetensors.index.json), pytorch_model.bin (torch.save zip) or
//! sharded .bin files. Only headers are parsed up front; [`Checkpoint::read_f32`] then reads one
//! tensor's bytes by range and widens them to f32.

use std::collections::BTreeMap;

use half::slice::HalfFloatSliceExt;

use super::pickle::{self, DType};
use super::source::Files;
use super::zip;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub(crate) struct TensorEntry {
    pub dtype: DType,
    /// PyTorch order: shape[0] is the outermost (rows of a Linear weight).
    pub shape: Vec<u64>,
    /// Strides in elements (row-major contiguous for safetensors).
    pub strides: Vec<u64>,
    /// Checkpoint file holding the bytes.
    pub file: String,
    /// Absolute byte offset of element 0 of the view.
    pub offset: u64,
}

impl TensorEntry {
    pub fn numel(&self) -> u64 {
        self.shape.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }

    fn is_contiguous(&self) -> bool {
        let mut expect = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect *= d;
        }
        true
    }

    /// Elements from element 0 of the view to its last element, inclusive.
    fn span(&self) -> u64 {
        if self.numel() == 0 {
            return 0;
        }
        // Saturating: a hostile shape must fail the bounds check, not overflow.
        self.shape.iter().zip(&self.strides).fold(1u64, |a, (&d, &s)| a.saturating_add((d - 1).saturating_mul(s)))
    }
}

pub(crate) struct Checkpoint {
    pub tensors: BTreeMap<String, TensorEntry>,
    /// "safetensors" or "pytorch".
    pub format: &'static str,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Convert(msg.into())
}

/// The files named by a sharded checkpoint's index (`weight_map` values), in sorted order.
fn shard_files(files: &dyn Files, index_name: &str) -> Result<Vec<String>> {
    let bytes = files.open_required(index_name)?.read_all()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{index_name}: {e}")))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad(format!("{index_name} has no weight_map")))?;
    let mut names: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(bad(format!("{index_name} lists no files")));
    }
    Ok(names)
}

impl Checkpoint {
    pub fn open(files: &dyn Files) -> Result<Self> {
        let (format, names) = if files.exists("model.safetensors") {
            ("safetensors", vec!["model.safetensors".to_string()])
        } else if files.exists("model.safetensors.index.json") {
            ("safetensors", shard_files(files, "model.safetensors.index.json")?)
        } else if files.exists("pytorch_model.bin") {
            ("pytorch", vec!["pytorch_model.bin".to_string()])
        } else if files.exists("pytorch_model.bin.index.json") {
            ("pytorch", shard_files(files, "pytorch_model.bin.index.json")?)
        } else {
            return Err(bad("no weights found: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin \
                 or pytorch_model.bin.index.json"));
        };
        let mut tensors = BTreeMap::new();
        for name in &names {
            let found = if format == "safetensors" { read_safetensors(files, name)? } else { read_torch(files, name)? };
            for (k, v) in found {
                if tensors.insert(k.clone(), v).is_some() {
                    return Err(bad(format!("tensor {k} appears twice in the checkpoint")));
                }
            }
        }
        Ok(Checkpoint { tensors, format })
    }

    /// The whole tensor as row-major f32 (strided views are gathered).
    pub fn read_f32(&self, files: &dyn Files, name: &str) -> Result<Vec<f32>> {
        let t = self.tensors.get(name).ok_or_else(|| bad(format!("tensor {name} missing")))?;
        let src = files.open_required(&t.file)?;
        let es = t.dtype.size() as u64;
        if t.is_contiguous() {
            // Read and widen in slices: peak memory is the f32 result plus one slice, not also the
            // raw bytes (and a f16 copy) of the whole tensor; in the browser's 32-bit wasm heap the
            // embedding of a 1.5B model is 100 MB raw, 200 MB widened.
            const SLICE: u64 = 1 << 20;
            let n = t.numel();
            let mut out = Vec::with_capacity(n as usize);
            let mut done = 0;
            while done < n {
                let k = SLICE.min(n - done);
                out.extend_from_slice(&widen(t.dtype, &src.read_at(t.offset + done * es, k * es)?));
                done += k;
            }
            return Ok(out);
        }
        let raw = src.read_at(t.offset, t.span() * es)?;
        let widened = widen(t.dtype, &raw);
        let mut out = Vec::with_capacity(t.numel() as usize);
        let rank = t.shape.len();
        let mut idx = vec![0u64; rank];
        for _ in 0..t.numel() {
            let at: u64 = idx.iter().zip(&t.strides).map(|(i, s)| i * s).sum();
            out.push(widened[at as usize]);
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

fn widen(dtype: DType, raw: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::F16 => {
            let h: Vec<half::f16> = raw.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect();
            let mut out = vec![0f32; h.len()];
            h.convert_to_f32_slice(&mut out);
            out
        }
        DType::BF16 => raw.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
    }
}

/// Safetensors: u64 header length, a JSON header {name: {dtype, shape, data_offsets}}, data.
fn read_safetensors(files: &dyn Files, file: &str) -> Result<Vec<(String, TensorEntry)>> {
    let src = files.open_required(file)?;
    let len = src.len();
    let n = u64::from_le_bytes(src.read_at(0, 8)?.try_into().unwrap());
    if n > len - 8 || n > 256 << 20 {
        return Err(bad(format!("{file}: header length {n} is implausible for a {len}-byte file")));
    }
    let header = src.read_at(8, n)?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("{file}: header: {e}")))?;
    let obj = json.as_object().ok_or_else(|| bad(format!("{file}: header is not an object")))?;
    let data_start = 8 + n;
    let mut out = Vec::new();
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype_s = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        let dtype =
            DType::from_safetensors(dtype_s).ok_or_else(|| bad(format!("{file}: tensor {name} has dtype {dtype_s}; only F32, F16 and BF16 are supported")))?;
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect())
            .ok_or_else(|| bad(format!("{file}: tensor {name} has no valid shape")))?;
        let offs: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect())
            .filter(|v: &Vec<u64>| v.len() == 2)
            .ok_or_else(|| bad(format!("{file}: tensor {name} has no valid data_offsets")))?;
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(format!("{name}: shape overflows")))?;
        let want = numel.checked_mul(dtype.size() as u64).ok_or_else(|| bad(format!("{name}: shape overflows")))?;
        if offs[1] < offs[0] || offs[1] - offs[0] != want || offs[1] > len - data_start {
            return Err(bad(format!("{file}: tensor {name}: data_offsets {offs:?} do not match shape {shape:?} {dtype_s} or the file size")));
        }
        let strides = contiguous_strides(&shape);
        out.push((name.clone(), TensorEntry { dtype, shape, strides, file: file.to_string(), offset: data_start + offs[0] }));
    }
    Ok(out)
}

fn contiguous_strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// torch.save archive: `<root>/data.pkl` (the pickled state dict) and `<root>/data/<key>` (one
/// entry per storage, raw little-endian elements).
fn read_torch(files: &dyn Files, file: &str) -> Result<Vec<(String, TensorEntry)>> {
    let src = files.open_required(file)?;
    let entries = zip::read_entries(&*src)?;
    let pkl = entries
        .iter()
        .find(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .ok_or_else(|| bad(format!("{file}: no data.pkl: not a torch.save zip archive (the legacy tar/pickle format is not supported)")))?;
    let root = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    if let Some(bo) = entries.iter().find(|e| e.name == format!("{root}byteorder")) {
        if src.read_at(bo.data_offset, bo.size)? != b"little" {
            return Err(bad(format!("{file}: big-endian checkpoints are not supported")));
        }
    }
    let state = pickle::read_state_dict(&src.read_at(pkl.data_offset, pkl.size)?)?;
    let mut out = Vec::new();
    for (name, t) in state {
        let entry_name = format!("{root}data/{}", t.storage_key);
        let e = entries.iter().find(|e| e.name == entry_name).ok_or_else(|| bad(format!("{file}: storage {entry_name} for tensor {name} is missing")))?;
        let es = t.dtype.size() as u64;
        let entry = TensorEntry { dtype: t.dtype, shape: t.shape, strides: t.strides, file: file.to_string(), offset: 0 };
        let numel = entry.numel();
        if numel > t.storage_numel {
            return Err(bad(format!("{file}: tensor {name} has more elements than its storage (overlapping views are not supported)")));
        }
        // The view must lie inside both the declared storage and the zip entry.
        let end = t.offset.checked_add(entry.span());
        match end {
            Some(end) if end <= t.storage_numel && end.checked_mul(es).is_some_and(|b| b <= e.size) => {}
            _ => return Err(bad(format!("{file}: tensor {name} lies outside its storage"))),
        }
        out.push((name, TensorEntry { offset: e.data_offset + t.offset * es, ..entry }));
    }
    Ok(out)
}
