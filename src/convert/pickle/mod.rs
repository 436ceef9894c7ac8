//! A pickle *reader* for PyTorch state dicts that executes nothing. It interprets only the
//! opcodes `torch.save` emits and recognises only the globals PyTorch writes for tensors
//! (`torch._utils._rebuild_tensor_v2`, typed storages, `collections.OrderedDict`). Any other
//! global - `os.system`, `builtins.eval`, a custom class - stops the read with an error naming
//! it, before anything could be called: a hostile checkpoint cannot run code here.

mod torch;

use torch::{call, persistent_load, resolve_global, Global};
pub(crate) use torch::{DType, TensorMeta};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage { dtype: DType, key: String, numel: u64 },
    Tensor(TensorMeta),
    Mark,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Convert(format!("pickle: {}", msg.into()))
}

/// Caps that keep a hostile pickle from exhausting memory.
const MAX_MEMO: usize = 1 << 22;
const MAX_STACK: usize = 1 << 22;
/// Nesting of tuples, lists and dicts: torch.save's state dicts nest a few levels; deeper values
/// would make cloning and dropping them recurse without limit (a stack overflow: found by
/// fuzzing, with a few thousand TUPLE1 opcodes).
const MAX_DEPTH: usize = 32;
/// Values copied by the memo (BINPUT/BINGET) and DUP, which deep-copy here: without a cap, a few
/// bytes of memo references double a value again and again (2^n copies in 10n bytes).
const MAX_COPIED: usize = 1 << 20;

/// Nesting depth of `v` (0 for a scalar). Values only exist within MAX_DEPTH, so the recursion
/// is bounded.
fn depth(v: &Value) -> usize {
    match v {
        Value::Tuple(items) | Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Dict(items) => 1 + items.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        _ => 0,
    }
}

/// Number of values in `v`.
fn size(v: &Value) -> usize {
    match v {
        Value::Tuple(items) | Value::List(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Dict(items) => 1 + items.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Counts a copy of `n` values against MAX_COPIED, before it is made.
fn count_copy(copied: &mut usize, n: usize) -> Result<()> {
    *copied = copied.saturating_add(n);
    if *copied > MAX_COPIED {
        return Err(bad(format!("more than {MAX_COPIED} values copied by memo references")));
    }
    Ok(())
}

/// Refuses `items` as the contents of a container if that would nest deeper than MAX_DEPTH.
fn check_items<'v>(items: impl IntoIterator<Item = &'v Value>) -> Result<()> {
    if items.into_iter().any(|v| depth(v) >= MAX_DEPTH) {
        return Err(bad(format!("values nested more than {MAX_DEPTH} levels deep")));
    }
    Ok(())
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: std::collections::HashMap<u32, Value>,
    /// Values copied so far (see MAX_COPIED).
    copied: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| bad("truncated"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("unterminated GLOBAL"))?;
        let s = String::from_utf8(rest[..n].to_vec()).map_err(|_| bad("non-UTF-8 GLOBAL name"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(bad("stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err(bad("stack underflow")),
            Some(v) => Ok(v),
        }
    }
    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err(bad("stack underflow")),
            Some(v) => Ok(v),
        }
    }
    /// Pops everything down to the last MARK (and the mark itself).
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.stack.iter().rposition(|v| *v == Value::Mark).ok_or_else(|| bad("MARK missing"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }
    fn memo_put(&mut self, key: u32) -> Result<()> {
        if self.memo.len() >= MAX_MEMO {
            return Err(bad("memo too large"));
        }
        let top = match self.stack.last() {
            Some(Value::Mark) | None => return Err(bad("stack underflow")),
            Some(v) => v,
        };
        count_copy(&mut self.copied, size(top))?;
        let v = top.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self.memo.get(&key).ok_or_else(|| bad(format!("memo key {key} missing")))?;
        count_copy(&mut self.copied, size(v))?;
        let v = v.clone();
        self.push(v)
    }
    fn str_of(&mut self, n: u64) -> Result<Value> {
        let n = usize::try_from(n).map_err(|_| bad("string too long"))?;
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8 string"))?))
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.push(Value::Mark)?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    check_items(&items)?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.stack[self.stack.len() - n..].contains(&Value::Mark) {
                        return Err(bad("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    check_items(&items)?;
                    self.push(Value::Tuple(items))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32; // MEMOIZE
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes (n <= 8 here).
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(bad("integer wider than 64 bits"));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'X' | b'T' => {
                    let n = self.u32()? as u64;
                    let v = self.str_of(n)?;
                    self.push(v)?
                }
                0x8c | b'U' => {
                    let n = self.u8()? as u64;
                    let v = self.str_of(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.str_of(n)?;
                    self.push(v)?
                }
                b'C' | b'B' => {
                    let n = if op == b'C' { self.u8()? as usize } else { self.u32()? as usize };
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve_global(&module, &name)?;
                    self.push(Value::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = resolve_global(&m, &n)?;
                            self.push(Value::Global(g))?
                        }
                        _ => return Err(bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = call(f, args)?;
                    self.push(v)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD: torch sets attributes like `_metadata` on the OrderedDict and
                    // nothing we need; it is only accepted on dicts and tensors.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => return Err(bad(format!("BUILD on unexpected object {}", kind(other)))),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    check_items([&k, &v])?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        other => return Err(bad(format!("SETITEM on {}", kind(other)))),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(bad("SETITEMS with an odd number of items"));
                    }
                    check_items(&items)?;
                    match self.top()? {
                        Value::Dict(d) => {
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        other => return Err(bad(format!("SETITEMS on {}", kind(other)))),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    check_items([&v])?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        other => return Err(bad(format!("APPEND on {}", kind(other)))),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    check_items(&items)?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        other => return Err(bad(format!("APPENDS on {}", kind(other)))),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let n = size(self.top()?);
                    count_copy(&mut self.copied, n)?;
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                _ => return Err(bad(format!("unsupported opcode 0x{op:02x} at byte {}", self.pos - 1))),
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(_) => "global",
        Value::Storage { .. } => "storage",
        Value::Tensor(_) => "tensor",
        Value::Mark => "mark",
    }
}

/// Reads a pickled state dict (`data.pkl` of a torch.save archive) into (name, tensor) pairs in
/// file order. Nested checkpoints ({"state_dict": {...}} or {"model": {...}}) are unwrapped.
pub(crate) fn read_state_dict(data: &[u8]) -> Result<Vec<(String, TensorMeta)>> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: Default::default(), copied: 0 };
    let mut root = m.run()?;
    loop {
        let Value::Dict(items) = root else { return Err(bad(format!("top-level object is a {}, not a dict", kind(&root)))) };
        let nested = items.iter().position(|(k, v)| matches!(k, Value::Str(s) if s == "state_dict" || s == "model") && matches!(v, Value::Dict(_)));
        if let Some(i) = nested {
            root = items.into_iter().nth(i).unwrap().1;
            continue;
        }
        let mut out = Vec::new();
        for (k, v) in items {
            match (k, v) {
                (Value::Str(name), Value::Tensor(t)) => out.push((name, t)),
                // Non-tensor entries (e.g. an epoch counter) carry no weights.
                (Value::Str(_), _) => {}
                (k, _) => return Err(bad(format!("state dict key is a {}, not a string", kind(&k)))),
            }
        }
        return Ok(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_any_other_global() {
        // GLOBAL 'builtins eval'
        let e = read_state_dict(b"\x80\x02cbuiltins\neval\nq\x00.").unwrap_err().to_string();
        assert!(e.contains("builtins.eval"), "{e}");
        // STACK_GLOBAL (protocol 4) 'os' 'system'
        let e = read_state_dict(b"\x80\x04\x8c\x02os\x8c\x06system\x93.").unwrap_err().to_string();
        assert!(e.contains("os.system"), "{e}");
        // INST / OBJ / NEWOBJ build arbitrary objects: not interpreted at all.
        for op in [b'i', b'o', 0x81] {
            let e = read_state_dict(&[0x80, 2, b'(', op, b'.']).unwrap_err().to_string();
            assert!(e.contains("unsupported opcode"), "{e}");
        }
    }

    /// Found by fuzzing: a few thousand TUPLE1 opcodes nest a value so deep that cloning or
    /// dropping it overflows the stack (a debug build, or the browser's 1 MiB wasm stack).
    #[test]
    fn deep_nesting_is_refused() {
        let mut p = b"\x80\x02)".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, 100_000));
        p.push(b'.');
        let e = read_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
        // Lists and dicts too.
        let mut p = b"\x80\x02".to_vec();
        for _ in 0..100 {
            p.extend_from_slice(b"]");
        }
        p.extend(std::iter::repeat_n(b'a', 99));
        p.push(b'.');
        assert!(read_state_dict(&p).unwrap_err().to_string().contains("nested more than"));
    }

    /// Memo references copy values: (x, x) of (x, x) of ... doubles with every 7 bytes.
    #[test]
    fn memo_copies_are_capped() {
        let mut p = b"\x80\x02Nq\x00".to_vec();
        for _ in 0..64 {
            p.extend_from_slice(b"h\x00h\x00\x86q\x00\x30");
        }
        p.extend_from_slice(b"h\x00.");
        let start = std::time::Instant::now();
        let e = read_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("copied") || e.contains("nested"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // Copies of wide values: a 1000-item list referenced many times.
        let mut p = b"\x80\x02](".to_vec();
        for _ in 0..1000 {
            p.extend_from_slice(b"K\x01");
        }
        p.extend_from_slice(b"eq\x00\x30");
        for _ in 0..10_000 {
            p.extend_from_slice(b"h\x00\x30");
        }
        p.extend_from_slice(b"h\x00.");
        assert!(read_state_dict(&p).unwrap_err().to_string().contains("copied"));
    }

    #[test]
    fn reads_a_minimal_state_dict() {
        // {'w': _rebuild_tensor_v2(('storage', HalfStorage, '0', 'cpu', 6), 0, (2, 3), (3, 1), False, OrderedDict())}
        let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nHalfStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend_from_slice(b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtRs.");
        let sd = read_state_dict(&p).unwrap();
        assert_eq!(sd.len(), 1);
        let (name, t) = &sd[0];
        assert_eq!(name, "w");
        assert_eq!((t.dtype, t.storage_key.as_str(), t.storage_numel), (DType::F16, "0", 6));
        assert_eq!((t.shape.clone(), t.strides.clone(), t.offset), (vec![2, 3], vec![3, 1], 0));
        // Any truncation is an error.
        for cut in 0..p.len() {
            assert!(read_state_dict(&p[..cut]).is_err());
        }
    }
}
