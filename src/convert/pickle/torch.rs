//! What the pickle's few allowed globals mean: typed storages, `_rebuild_tensor_v2` (a strided
//! view of a storage) and `OrderedDict`. Everything else is refused by [`resolve_global`].

use super::{bad, kind, Value};
use crate::{Error, Result};

/// Element type of a typed storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Safetensors dtype names.
    pub fn from_safetensors(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            _ => return None,
        })
    }
}

/// The only callables a state dict may reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(DType),
}

pub(super) fn resolve_global(module: &str, name: &str) -> Result<Global> {
    Ok(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "FloatStorage") => Global::Storage(DType::F32),
        ("torch", "HalfStorage") => Global::Storage(DType::F16),
        ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
        _ => {
            return Err(Error::Convert(format!(
                "refusing pickle global {module}.{name}: a PyTorch checkpoint may only reference tensor \
                 storages (torch._utils._rebuild_tensor_v2, torch.FloatStorage/HalfStorage/BFloat16Storage, \
                 collections.OrderedDict); this file would run other code when loaded"
            )))
        }
    })
}

/// A tensor as the pickle describes it: a view (offset, shape, strides in elements) of a storage
/// kept in the zip archive under `data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorMeta {
    pub dtype: DType,
    pub storage_key: String,
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub strides: Vec<u64>,
}

fn as_u64(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        _ => Err(bad(format!("{what} must be a non-negative int, found {}", kind(v)))),
    }
}

fn as_u64_tuple(v: &Value, what: &str) -> Result<Vec<u64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|x| as_u64(x, what)).collect(),
        _ => Err(bad(format!("{what} must be a tuple, found {}", kind(v)))),
    }
}

/// The REDUCE opcode: the only "calls" we perform, each on a recognised global.
pub(super) fn call(f: Value, args: Value) -> Result<Value> {
    let Value::Global(g) = f else { return Err(bad(format!("REDUCE on a {}, not a global", kind(&f)))) };
    let Value::Tuple(args) = args else { return Err(bad("REDUCE arguments must be a tuple")) };
    match g {
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err(bad("OrderedDict with arguments"));
            }
            Ok(Value::Dict(Vec::new()))
        }
        Global::RebuildTensorV2 => {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if args.len() < 4 {
                return Err(bad("_rebuild_tensor_v2 needs at least 4 arguments"));
            }
            let Value::Storage { dtype, key, numel } = &args[0] else {
                return Err(bad("_rebuild_tensor_v2: first argument is not a storage"));
            };
            let shape = as_u64_tuple(&args[2], "tensor size")?;
            let strides = as_u64_tuple(&args[3], "tensor stride")?;
            if shape.len() != strides.len() {
                return Err(bad("tensor size and stride differ in rank"));
            }
            Ok(Value::Tensor(TensorMeta {
                dtype: *dtype,
                storage_key: key.clone(),
                storage_numel: *numel,
                offset: as_u64(&args[1], "storage offset")?,
                shape,
                strides,
            }))
        }
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err(bad("_rebuild_parameter without a tensor")),
        },
        Global::Storage(_) => Err(bad("storage classes may only appear in persistent ids")),
    }
}

/// torch.save's persistent id: ('storage', <StorageClass>, key, location, numel).
pub(super) fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else { return Err(bad("persistent id is not a tuple")) };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), _location, numel] if tag == "storage" => {
            Ok(Value::Storage { dtype: *dtype, key: key.clone(), numel: as_u64(numel, "storage size")? })
        }
        _ => Err(bad("persistent id is not a ('storage', <Storage>, key, location, numel) tuple")),
    }
}
