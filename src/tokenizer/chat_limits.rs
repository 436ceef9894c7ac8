//! Chat templates run under limits.
//!
//! A GGUF's `tokenizer.chat_template` is code from whoever made the file. Rendering it must end,
//! quickly and in bounded memory, whatever it contains: a hostile template becomes a
//! `ChatTemplateError`, never a hang or an aborted process.
//!
//! How: the template is parsed with minijinja's parser, the syntax tree is rewritten so that every
//! operation whose cost depends on the size of its operands goes through a hook of ours, and the
//! result is compiled and run on minijinja's VM with a step limit (`fuel`). The hooks charge a
//! per-render [`Budget`] *before* the work or the allocation happens:
//!
//! - `~`, `+`, `*` (string and list growth, the doubling attack) are replaced by calls that check
//!   the size of the result first;
//! - comparisons, `in`, subscripts, slices, loop iterables and call arguments are wrapped in a call
//!   that walks the operand (iteratively, charging every node) so a value shared many times inside
//!   itself (a DAG that unfolds to gigabytes) is caught when it is used;
//! - every filter and test goes through one generic guard that charges its input and output, and
//!   the filters that can emit far more than they read (`join`, `replace`, `indent`, `format`,
//!   `list`, `batch`, ...) are replaced by versions that check a bound of their output first;
//! - everything written out (`{{ x }}`, raw text, and what macros and `{% set %}` blocks capture)
//!   goes through the formatter, which charges it;
//! - values stored into lists, dicts and namespaces are checked for depth (so nothing recurses
//!   deeply later, when the value is printed, compared or dropped) and may not hold a namespace,
//!   a loop or a macro (so no cycle and no depth hidden behind an opaque object can be built).
//!
//! Fuel bounds the number of VM instructions; the budget bounds what each instruction may cost,
//! so time and memory are both bounded. The limits ([`ChatLimits`]) were chosen from measurement
//! of llama.cpp's template collection (tests/chat_template.rs prints the figures).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use minijinja::machinery::ast::{self, CallArg, Expr, Spanned, Stmt};
use minijinja::machinery::{make_string_output, parse, CodeGenerator, Span, Vm, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, Output, State};

/// The limits of one render. [`ChatLimits::for_input`] scales the size limits with the
/// conversation, since a long chat legitimately renders to a long prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Template source size in bytes.
    pub template_bytes: usize,
    /// VM instructions (minijinja fuel).
    pub fuel: u64,
    /// Work units: about one per byte read or written by an operation plus [`NODE_WORK`] per value
    /// visited. A proxy for time that fuel alone is not (one `in` over a big string is one step).
    pub work: u64,
    /// Bytes of strings and lists created plus bytes written out, summed over the whole render (so
    /// an upper bound on what the render holds at any time).
    pub memory: u64,
    /// Nesting depth of lists, dicts and namespaces built by the template.
    pub depth: usize,
    /// minijinja's recursion limit (each macro call costs 4 of it, each loop or `with` level 1).
    pub recursion: usize,
}

/// Work charged per value visited by a walk: visiting one costs about as much as reading a few
/// hundred bytes (100-150 ns natively).
pub const NODE_WORK: u64 = 256;
/// Namespaces one render may create.
const MAX_NAMESPACES: usize = 1000;
/// Memory charged per value created inside a list or map (a 24-byte `Value` plus the allocation
/// behind it).
const NODE_BYTES: u64 = 32;

impl ChatLimits {
    /// Fixed allowances, with a wide margin over what real templates need. Measured by
    /// tests/chat_template.rs `real_templates_stay_far_below_the_limits` over llama.cpp's
    /// collection (the 55 templates of tests/data/chat_templates.json) rendering 50-turn
    /// conversations of 2 KB messages (104 KB): at most 18.8k steps (gemma-4), 10.9 M work
    /// units (Qwen3.5) and 0.96 MB of memory (Nemotron-3), 0.6 MB of real heap peak, 10 ms. The
    /// limits scaled for that conversation are 14x (memory) to 160x (fuel) above.
    ///
    /// - template_bytes 256 KiB: the largest real template is 16.7 KB.
    /// - fuel 1,000,000 steps (+20 per input byte): about 50-100 ms natively when exhausted.
    /// - work 256 M units (+512 per input byte): at most ~1 M values walked, ~150 ms natively.
    /// - memory 8 MiB (+48 per input byte): real renders use up to ~9x their input. The heap
    ///   peak of a hostile render stays within ~3x this (a string being doubled exists as the
    ///   old value, the new buffer and its copy into a `Value`): 25 MB measured.
    /// - depth 32: the messages are 3 levels deep; JSON schemas of tools rarely pass 10.
    /// - recursion 200 (50 nested macro calls): real templates nest macros 2-3 deep, and the
    ///   deepest recursion this allows needs under 256 KiB of stack natively, a quarter of the
    ///   1 MiB wasm stack.
    pub const BASE: ChatLimits = ChatLimits { template_bytes: 256 << 10, fuel: 1_000_000, work: 256 << 20, memory: 8 << 20, depth: 32, recursion: 200 };

    /// Limits for a conversation of `input_bytes` bytes (message text, roles, special tokens).
    pub fn for_input(input_bytes: usize) -> ChatLimits {
        let n = input_bytes as u64;
        let b = Self::BASE;
        ChatLimits {
            fuel: b.fuel.saturating_add(n.saturating_mul(20)),
            work: b.work.saturating_add(n.saturating_mul(512)),
            memory: b.memory.saturating_add(n.saturating_mul(48)),
            ..b
        }
    }
}

/// What one render used (for measurements and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    pub fuel: u64,
    pub work: u64,
    pub memory: u64,
    pub output_bytes: u64,
}

fn limit_error(msg: String) -> JinjaError {
    JinjaError::new(ErrorKind::InvalidOperation, msg)
}

/// The running totals of one render, shared by every hook of its environment.
pub(super) struct Budget {
    limits: ChatLimits,
    work: AtomicU64,
    memory: AtomicU64,
    /// The namespaces `namespace()` created, to recognise them in walks.
    namespaces: Mutex<Vec<Value>>,
}

impl Budget {
    pub(super) fn new(limits: ChatLimits) -> Budget {
        Budget { limits, work: AtomicU64::new(0), memory: AtomicU64::new(0), namespaces: Mutex::new(Vec::new()) }
    }

    /// Charges `units` of work; fails once the total passes the limit.
    pub(super) fn work(&self, units: u64) -> Result<(), JinjaError> {
        let total = self.work.fetch_add(units, Ordering::Relaxed).saturating_add(units);
        if total > self.limits.work {
            return Err(limit_error(format!("chat template exceeded its work limit ({} M units): it computes too much", self.limits.work >> 20)));
        }
        Ok(())
    }

    /// Charges `bytes` about to be allocated or written (also as work); fails, before the
    /// allocation happens, once the total passes the limit.
    pub(super) fn alloc(&self, bytes: u64) -> Result<(), JinjaError> {
        let total = self.memory.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes);
        if total > self.limits.memory {
            return Err(limit_error(format!("chat template exceeded its memory limit ({} MiB): it builds too much text or data", self.limits.memory >> 20)));
        }
        self.work(bytes)
    }

    /// Bytes that may still be allocated.
    fn room(&self) -> u64 {
        self.limits.memory.saturating_sub(self.memory.load(Ordering::Relaxed))
    }

    fn is_namespace(&self, v: &Value) -> Result<bool, JinjaError> {
        let list = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        self.work(list.len() as u64 * 8)?;
        Ok(list.iter().any(|ns| minijinja::tests::is_sameas(ns, v)))
    }

    /// Walks `v` without recursion, charging [`NODE_WORK`] per value plus string bytes. With
    /// `store`, `v` is about to be stored in a container: it may not be or hold a namespace or an
    /// opaque object (loop, macro, function), and its depth must leave room for the container.
    pub(super) fn walk(&self, v: &Value, store: bool) -> Result<Shape, JinjaError> {
        let max_depth = if store { self.limits.depth.saturating_sub(1) } else { self.limits.depth };
        let mut shape = Shape::default();
        // Pending iterators: (iterator, depth of its items, the map it enumerates the keys of).
        let mut stack: Vec<(minijinja::value::ValueIter, usize, Option<Value>)> = Vec::new();
        let visit = |v: &Value, depth: usize, stack: &mut Vec<_>, shape: &mut Shape| -> Result<(), JinjaError> {
            shape.nodes += 1;
            shape.depth = shape.depth.max(depth);
            let bytes = match v.kind() {
                ValueKind::String => v.as_str().map_or(0, |s| s.len() as u64),
                ValueKind::Bytes => v.as_bytes().map_or(0, |b| b.len() as u64),
                _ => 0,
            };
            shape.bytes += bytes;
            self.work(NODE_WORK + bytes)?;
            match v.kind() {
                ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
                    if store && v.kind() == ValueKind::Map {
                        if self.is_namespace(v)? {
                            return Err(limit_error("chat templates may not store a namespace inside a list, dict or namespace".into()));
                        }
                        // A loop object holds the iterator of its loop, which our walk cannot see: a
                        // chain of loops stored in lists iterated by the next loop would be a value
                        // nested without limit (dropped recursively at the end).
                        if is_loop(v) {
                            return Err(limit_error("chat templates may not store a loop inside a list, dict or namespace".into()));
                        }
                    }
                    if depth + 1 > max_depth {
                        return Err(limit_error(format!("chat template built a value nested more than {} levels deep", self.limits.depth)));
                    }
                    let map = (v.kind() == ValueKind::Map).then(|| v.clone());
                    match v.try_iter() {
                        Ok(iter) => stack.push((iter, depth + 1, map)),
                        // An object that cannot be enumerated shows nothing inside: opaque.
                        Err(_) if store => {
                            return Err(limit_error("chat templates may not store an object they cannot list inside a list, dict or namespace".into()))
                        }
                        Err(_) => {}
                    }
                }
                ValueKind::Plain | ValueKind::Invalid if store => {
                    return Err(limit_error(format!("chat templates may not store a {} (loop, macro, function) inside a list, dict or namespace", v.kind())));
                }
                _ => {}
            }
            Ok(())
        };
        visit(v, 0, &mut stack, &mut shape)?;
        while let Some((iter, depth, map)) = stack.last_mut() {
            let (depth, map) = (*depth, map.clone());
            match iter.next() {
                Some(item) => {
                    if let Some(map) = map {
                        let value = map.get_item(&item)?;
                        visit(&item, depth, &mut stack, &mut shape)?;
                        visit(&value, depth, &mut stack, &mut shape)?;
                    } else {
                        visit(&item, depth, &mut stack, &mut shape)?;
                    }
                }
                None => {
                    stack.pop();
                }
            }
        }
        Ok(shape)
    }

    /// The length of `v` written with `{}` (or `{:#?}` with `debug`), counted without allocating
    /// and without going past what memory is left (an error then).
    fn display_len(&self, v: &Value, debug: bool) -> Result<u64, JinjaError> {
        let mut sink = Sink { budget: self, limit: self.room(), written: 0, out: None };
        let r = if debug { write!(sink, "{v:#?}") } else { write!(sink, "{v}") };
        sink.finish(r)?;
        self.work(sink.written)?;
        Ok(sink.written)
    }

    /// `v` written with `{}` into a new string, charged as it is written.
    fn display(&self, v: &Value, out: &mut String) -> Result<(), JinjaError> {
        let mut sink = Sink { budget: self, limit: self.room(), written: 0, out: Some(out) };
        let r = write!(sink, "{v}");
        sink.finish(r)
    }
}

/// minijinja's `loop` object (a private type): shaped like a map whose listing starts with
/// "index0". Dicts, keyword arguments and the messages are other types.
fn is_loop(v: &Value) -> bool {
    !v.is_kwargs()
        && v.downcast_object_ref::<std::collections::BTreeMap<Value, Value>>().is_none()
        && v.try_iter().ok().and_then(|mut keys| keys.next()).is_some_and(|k| k.as_str() == Some("index0"))
}

/// What a walk found.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Shape {
    /// Values visited (containers, keys, items, scalars).
    pub nodes: u64,
    /// Bytes of the strings among them.
    pub bytes: u64,
    /// Deepest container nesting (0 for a scalar).
    pub depth: usize,
}

/// A `fmt::Write` that counts (and optionally keeps) what is written and stops at a limit.
struct Sink<'a> {
    budget: &'a Budget,
    limit: u64,
    written: u64,
    out: Option<&'a mut String>,
}

impl fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.written += s.len() as u64;
        if self.written > self.limit {
            return Err(fmt::Error);
        }
        if let Some(out) = self.out.as_deref_mut() {
            out.push_str(s);
        }
        Ok(())
    }
}

impl Sink<'_> {
    fn finish(&self, r: fmt::Result) -> Result<(), JinjaError> {
        if r.is_err() && self.written > self.limit {
            // Charge the whole limit: the error names the memory limit.
            return self.budget.alloc(self.limit.saturating_add(1)).and(Err(limit_error("chat template output too large".into())));
        }
        r.map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "formatting failed"))?;
        if self.out.is_some() {
            self.budget.alloc(self.written)?;
        }
        Ok(())
    }
}

/// Items a filter iterating `v` produces: characters of a string, entries of a container.
fn item_count(budget: &Budget, v: &Value) -> Result<u64, JinjaError> {
    if let Some(s) = v.as_str() {
        budget.work(s.len() as u64)?;
        return Ok(s.chars().count() as u64);
    }
    match v.len() {
        Some(n) => Ok(n as u64),
        None if matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable | ValueKind::Map) => {
            // An iterator without a length: count it, charging each item.
            let mut n = 0;
            for _ in v.try_iter()? {
                budget.work(NODE_WORK)?;
                n += 1;
            }
            Ok(n)
        }
        None => Ok(0),
    }
}

fn str_arg(args: &[Value], i: usize) -> Option<&str> {
    args.get(i).and_then(|v| v.as_str())
}

/// Keyword argument `name` of a filter call (the last argument, when it is a kwargs map).
fn kwarg(args: &[Value], name: &str) -> Option<Value> {
    let last = args.last().filter(|v| v.is_kwargs())?;
    last.get_attr(name).ok().filter(|v| !v.is_undefined())
}

/// Positional argument `i` unless it is the kwargs map.
fn pos_arg(args: &[Value], i: usize) -> Option<&Value> {
    args.get(i).filter(|v| !v.is_kwargs())
}

fn as_count(v: Option<Value>) -> u64 {
    v.and_then(|v| v.as_i64()).map_or(0, |n| n.max(0) as u64)
}

/// Number of pieces `s.split(sep)` gives (`None`: Python's split on runs of whitespace).
pub(super) fn split_pieces(budget: &Budget, s: &str, sep: Option<&str>) -> Result<u64, JinjaError> {
    budget.work(s.len() as u64)?;
    Ok(match sep {
        Some("") => s.len() as u64 + 2,
        Some(sep) => s.matches(sep).count() as u64 + 1,
        None => s.split_whitespace().count() as u64,
    })
}

/// Bytes of `s.replace(old, new)` (`count`: at most that many replacements).
pub(super) fn replace_len(budget: &Budget, s: &str, old: &str, new: &str, count: Option<u64>) -> Result<u64, JinjaError> {
    budget.work(s.len() as u64)?;
    let mut n = if old.is_empty() { s.chars().count() as u64 + 1 } else { s.matches(old).count() as u64 };
    if let Some(c) = count {
        n = n.min(c);
    }
    Ok((s.len() as u64).saturating_add(n.saturating_mul(new.len() as u64)))
}

/// A bound on the bytes a filter that can write much more than it reads produces, or `None`
/// for the filters whose output is at most a small multiple of their input.
fn filter_bound(budget: &Budget, name: &str, args: &[Value]) -> Result<Option<u64>, JinjaError> {
    let Some(value) = args.first() else { return Ok(None) };
    let items = |v: &Value| item_count(budget, v);
    let bound = match name {
        "join" => {
            let sep = pos_arg(args, 1).and_then(|v| v.as_str().map(str::len)).unwrap_or(0) as u64;
            let mut total = 0u64;
            if let Some(s) = value.as_str() {
                total = (s.len() as u64).saturating_add(items(value)?.saturating_mul(sep));
            } else {
                let attribute = kwarg(args, "attribute");
                for item in value.try_iter()? {
                    let item = match &attribute {
                        Some(a) => item.get_item(a).unwrap_or_default(),
                        None => item,
                    };
                    total = total.saturating_add(budget.display_len(&item, false)?).saturating_add(sep);
                    if total > budget.room() {
                        break;
                    }
                }
            }
            total
        }
        "replace" => match (value.as_str(), str_arg(args, 1), str_arg(args, 2)) {
            (Some(s), Some(old), Some(new)) => replace_len(budget, s, old, new, pos_arg(args, 3).and_then(|c| c.as_i64()).map(|c| c.max(0) as u64))?,
            _ => budget.display_len(value, false)?,
        },
        "indent" => {
            let width = pos_arg(args, 1).cloned().or_else(|| kwarg(args, "width")).map(|w| as_count(Some(w))).unwrap_or(4);
            let s = value.as_str().unwrap_or_default();
            budget.work(s.len() as u64)?;
            (s.len() as u64).saturating_add((s.matches('\n').count() as u64 + 1).saturating_mul(width))
        }
        "format" => {
            let fmt = value.as_str().unwrap_or_default();
            budget.work(fmt.len() as u64)?;
            // Widths and precisions are digit runs of the format string: their sum bounds padding.
            let digits: u64 = fmt
                .split(|c: char| !c.is_ascii_digit())
                .filter(|d| !d.is_empty())
                .map(|d| d.parse::<u64>().unwrap_or(u64::MAX))
                .fold(0u64, |a, b| a.saturating_add(b));
            let mut total = (fmt.len() as u64).saturating_add(digits);
            for a in &args[1..] {
                total = total.saturating_add(budget.display_len(a, false)?.saturating_mul(6)).saturating_add(64);
            }
            total
        }
        "string" => budget.display_len(value, false)?,
        "pprint" => budget.display_len(value, true)?,
        // HTML entities are at most 6 bytes per input byte.
        "escape" | "e" => budget.display_len(value, false)?.saturating_mul(6),
        // Unicode case mapping at most triples a string's bytes.
        "upper" | "lower" | "title" | "capitalize" => budget.display_len(value, false)?.saturating_mul(3),
        "split" => match value.as_str() {
            Some(s) => {
                let sep =
                    pos_arg(args, 1).and_then(|v| v.as_str()).map(str::to_string).or_else(|| kwarg(args, "split").and_then(|v| v.as_str().map(str::to_string)));
                split_pieces(budget, s, sep.as_deref())?.saturating_mul(NODE_BYTES * 2).saturating_add(s.len() as u64)
            }
            None => 0,
        },
        "lines" => match value.as_str() {
            Some(s) => split_pieces(budget, s, Some("\n"))?.saturating_mul(NODE_BYTES * 2).saturating_add(s.len() as u64),
            None => 0,
        },
        "batch" | "slice" => {
            let n = as_count(pos_arg(args, 1).cloned());
            items(value)?.saturating_add(n).saturating_mul(NODE_BYTES * 2)
        }
        // Filters that turn their input into a list: a string becomes one value per character.
        "list" | "map" | "select" | "reject" | "selectattr" | "rejectattr" | "unique" | "sort" | "reverse" | "chain" | "zip" => {
            let mut n = items(value)?;
            for a in &args[1..] {
                if matches!(a.kind(), ValueKind::Seq | ValueKind::Iterable | ValueKind::String) && name != "map" {
                    n = n.saturating_add(items(a)?);
                }
            }
            n.saturating_mul(NODE_BYTES)
        }
        // Pairs: a list of two-item lists.
        "items" | "dictsort" | "groupby" => items(value)?.saturating_mul(NODE_BYTES * 4),
        _ => return Ok(None),
    };
    Ok(Some(bound))
}

/// Extra work a filter does beyond reading its input once: tests or filters applied per item,
/// comparisons of a sort.
fn filter_extra_work(budget: &Budget, name: &str, args: &[Value], input: &Shape) -> Result<u64, JinjaError> {
    Ok(match name {
        "map" | "select" | "reject" | "selectattr" | "rejectattr" => {
            let n = args.first().map(|v| item_count(budget, v)).transpose()?.unwrap_or(0);
            let mut per_item = NODE_WORK;
            for a in args.iter().skip(1) {
                let s = budget.walk(a, false)?;
                per_item = per_item.saturating_add(s.bytes + s.nodes * NODE_WORK);
            }
            n.saturating_mul(per_item)
        }
        // `sum(start=...)` of strings or lists copies the running total at each item.
        "sum" => {
            let n = args.first().map(|v| item_count(budget, v)).transpose()?.unwrap_or(0);
            n.saturating_mul(input.bytes + input.nodes * NODE_WORK) / 2
        }
        "sort" | "dictsort" | "groupby" | "unique" | "min" | "max" => {
            let log = 64 - (input.nodes + 1).leading_zeros() as u64;
            (input.bytes + input.nodes * NODE_WORK).saturating_mul(log)
        }
        _ => 0,
    })
}

/// The names hooks are registered under: not identifiers, so no template can shadow or call
/// them by name.
mod hook {
    pub const CONCAT: &str = "$cat";
    pub const ADD: &str = "$add";
    pub const MUL: &str = "$mul";
    pub const WALK: &str = "$w";
    pub const STORE: &str = "$n";
    pub const KEEP: &str = "$k";
    pub const ACC_CONCAT: &str = "$acc~";
    pub const ACC_ADD: &str = "$acc+";
    pub const INDEX: &str = "$ix";
    pub const SLICE: &str = "$sl";
    pub const FILTER: &str = "$f";
    pub const TEST: &str = "$t";
}

/// The filters with a bounded override ([`filter_bound`]); the generic filter hook charges the
/// output of the others after the fact.
const BOUNDED_FILTERS: &[&str] = &[
    "join",
    "replace",
    "indent",
    "format",
    "string",
    "pprint",
    "escape",
    "e",
    "upper",
    "lower",
    "title",
    "capitalize",
    "split",
    "lines",
    "batch",
    "slice",
    "list",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "unique",
    "sort",
    "reverse",
    "chain",
    "zip",
    "items",
    "dictsort",
    "groupby",
];

/// minijinja's own `a + b` and `a * b`, evaluated after the hooks have charged the result.
fn arith(mul: bool, a: Value, b: Value) -> Result<Value, JinjaError> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    static EXPRS: OnceLock<(minijinja::Expression<'static, 'static>, minijinja::Expression<'static, 'static>)> = OnceLock::new();
    let (add, mul_e) = EXPRS.get_or_init(|| {
        let env = ENV.get_or_init(Environment::new);
        (env.compile_expression("a + b").expect("a + b"), env.compile_expression("a * b").expect("a * b"))
    });
    let e = if mul { mul_e } else { add };
    e.eval(minijinja::context! { a => a, b => b })
}

/// Length of `v` if it is a string (to size a buffer exactly instead of growing it).
fn str_len(v: &Value) -> usize {
    v.as_str().map_or(0, str::len)
}

/// `a + c`, charged.
fn add(b: &Budget, a: Value, c: Value) -> Result<Value, JinjaError> {
    if let (Some(x), Some(y)) = (a.as_str(), c.as_str()) {
        b.alloc(x.len() as u64 + y.len() as u64 + NODE_BYTES)?;
    } else if is_list(&a) && is_list(&c) {
        // minijinja concatenates lazily and flattens every 32 levels: about one copy per item.
        let n = a.len().unwrap_or(0) as u64 + c.len().unwrap_or(0) as u64;
        b.alloc(n * 8 + NODE_BYTES)?;
    }
    arith(false, a, c)
}

fn is_list(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// Registers the hooks the rewritten template calls, the bounded filters and functions, and the
/// charging formatter.
pub(super) fn install(env: &mut Environment<'_>, budget: &Arc<Budget>) {
    let limits = budget.limits;
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    // debug() prints the whole state: no bound on it short of re-implementing it.
    env.remove_global("debug");

    let b = budget.clone();
    env.add_function(hook::CONCAT, move |a: Value, c: Value| -> Result<Value, JinjaError> {
        let mut s = String::with_capacity(str_len(&a) + str_len(&c));
        b.display(&a, &mut s)?;
        b.display(&c, &mut s)?;
        Ok(Value::from(s))
    });
    let b = budget.clone();
    env.add_function(hook::ADD, move |a: Value, c: Value| add(&b, a, c));
    let b = budget.clone();
    env.add_function(hook::MUL, move |a: Value, c: Value| -> Result<Value, JinjaError> {
        let (seq, n) = if a.as_i64().is_some() && !matches!(a.kind(), ValueKind::Bool) { (&c, a.as_i64()) } else { (&a, c.as_i64()) };
        let n = n.unwrap_or(0).max(0) as u64;
        if let Some(s) = seq.as_str() {
            b.alloc((s.len() as u64).saturating_mul(n).saturating_add(NODE_BYTES))?;
        } else if is_list(seq) {
            // Repeated lists are lazy in minijinja, but whatever reads them pays per item.
            let len = item_count(&b, seq)?;
            b.alloc(len.saturating_mul(n).saturating_mul(NODE_BYTES).saturating_add(NODE_BYTES))?;
        }
        arith(true, a, c)
    });
    let b = budget.clone();
    env.add_function(hook::WALK, move |v: Value| -> Result<Value, JinjaError> {
        b.walk(&v, false)?;
        Ok(v)
    });
    let b = budget.clone();
    env.add_function(hook::STORE, move |v: Value| -> Result<Value, JinjaError> {
        // A new slot, and a new long-lived reference to every string inside (see `ACC_CONCAT`).
        let shape = b.walk(&v, true)?;
        b.alloc(shape.bytes + NODE_BYTES)?;
        Ok(v)
    });
    let b = budget.clone();
    env.add_function(hook::KEEP, move |v: Value| -> Result<Value, JinjaError> {
        // A string bound to a name or a macro argument: a long-lived reference to it.
        if let Some(s) = v.as_str() {
            b.alloc(s.len() as u64)?;
        }
        Ok(v)
    });
    // `{% set ns.a = ns.a ~ x ~ y %}` (and `+` on strings), the way templates accumulate text:
    // only the new bytes are charged, since the old value is replaced. It is freed then, or
    // something else still references it, and every other way to reference a string (storing it
    // in a container, binding it to a name, passing it to a macro) is charged in full. So the
    // charges still bound what is alive, and accumulating n bytes costs O(n), not O(n^2).
    let b = budget.clone();
    env.add_function(hook::ACC_CONCAT, move |args: Rest<Value>| -> Result<Value, JinjaError> {
        let mut s = String::with_capacity(args.iter().map(str_len).sum());
        let mut parts = args.0.into_iter();
        let old = parts.next().unwrap_or_default();
        match old.as_str() {
            Some(o) => {
                b.work(o.len() as u64)?;
                s.push_str(o);
            }
            None => b.display(&old, &mut s)?,
        }
        b.alloc(NODE_BYTES)?;
        for p in parts {
            b.display(&p, &mut s)?;
        }
        Ok(Value::from(s))
    });
    let b = budget.clone();
    env.add_function(hook::ACC_ADD, move |args: Rest<Value>| -> Result<Value, JinjaError> {
        let mut parts = args.0.into_iter();
        let mut acc = parts.next().unwrap_or_default();
        let mut owned: Option<String> = None;
        for p in parts {
            match (&owned, acc.as_str(), p.as_str()) {
                (Some(_), _, Some(x)) => {
                    b.alloc(x.len() as u64)?;
                    owned.as_mut().expect("string").push_str(x);
                }
                (None, Some(a), Some(x)) => {
                    b.work(a.len() as u64)?;
                    b.alloc(x.len() as u64 + NODE_BYTES)?;
                    let mut o = String::with_capacity(a.len() + x.len());
                    o.push_str(a);
                    o.push_str(x);
                    owned = Some(o);
                }
                _ => {
                    if let Some(o) = owned.take() {
                        acc = Value::from(o);
                    }
                    acc = add(&b, acc, p)?;
                }
            }
        }
        Ok(owned.map(Value::from).unwrap_or(acc))
    });
    let b = budget.clone();
    env.add_function(hook::INDEX, move |v: Value| -> Result<Value, JinjaError> {
        // Indexing a string walks its characters.
        if let Some(s) = v.as_str() {
            b.work(s.len() as u64)?;
        }
        Ok(v)
    });
    let b = budget.clone();
    env.add_function(hook::SLICE, move |v: Value| -> Result<Value, JinjaError> {
        // A slice copies at most the whole value.
        if let Some(s) = v.as_str() {
            b.alloc(s.len() as u64 + NODE_BYTES)?;
        } else if is_list(&v) {
            let n = item_count(&b, &v)?;
            b.alloc(n.saturating_mul(NODE_BYTES) + NODE_BYTES)?;
        }
        Ok(v)
    });
    let b = budget.clone();
    env.add_filter(hook::FILTER, move |state: &State, args: Rest<Value>| -> Result<Value, JinjaError> {
        // args: the filtered value, the filter's name, then the filter's own arguments.
        let mut args = args.0;
        if args.len() < 2 {
            return Err(JinjaError::from(ErrorKind::MissingArgument));
        }
        let name = args.remove(1);
        let name = name.as_str().unwrap_or_default();
        let mut input = Shape::default();
        for a in &args {
            let s = b.walk(a, false)?;
            input.nodes += s.nodes;
            input.bytes += s.bytes;
        }
        b.work(filter_extra_work(&b, name, &args, &input)?)?;
        let out = state.apply_filter(name, &args)?;
        let shape = b.walk(&out, false)?;
        if shape.depth > b.limits.depth {
            return Err(limit_error(format!("chat template built a value nested more than {} levels deep", b.limits.depth)));
        }
        if !BOUNDED_FILTERS.contains(&name) {
            b.alloc(shape.bytes + shape.nodes * NODE_BYTES)?;
        }
        Ok(out)
    });
    let b = budget.clone();
    env.add_test(hook::TEST, move |state: &State, args: Rest<Value>| -> Result<bool, JinjaError> {
        let mut args = args.0;
        if args.len() < 2 {
            return Err(JinjaError::from(ErrorKind::MissingArgument));
        }
        let name = args.remove(1);
        for a in &args {
            b.walk(a, false)?;
        }
        state.perform_test(name.as_str().unwrap_or_default(), &args)
    });

    // The filters that can write much more than they read: check a bound of the output, charge
    // it, then run minijinja's own filter.
    let builtins: &[(&str, Value)] = &[
        ("join", Value::from_function(minijinja::filters::join)),
        ("replace", Value::from_function(minijinja::filters::replace)),
        ("indent", Value::from_function(minijinja::filters::indent)),
        ("format", Value::from_function(minijinja::filters::format)),
        ("string", Value::from_function(minijinja::filters::string)),
        ("pprint", Value::from_function(minijinja::filters::pprint)),
        ("escape", Value::from_function(minijinja::filters::escape)),
        ("e", Value::from_function(minijinja::filters::escape)),
        ("upper", Value::from_function(minijinja::filters::upper)),
        ("lower", Value::from_function(minijinja::filters::lower)),
        ("title", Value::from_function(minijinja::filters::title)),
        ("capitalize", Value::from_function(minijinja::filters::capitalize)),
        ("split", Value::from_function(minijinja::filters::split)),
        ("lines", Value::from_function(minijinja::filters::lines)),
        ("batch", Value::from_function(minijinja::filters::batch)),
        ("slice", Value::from_function(minijinja::filters::slice)),
        ("list", Value::from_function(minijinja::filters::list)),
        ("map", Value::from_function(minijinja::filters::map)),
        ("select", Value::from_function(minijinja::filters::select)),
        ("reject", Value::from_function(minijinja::filters::reject)),
        ("selectattr", Value::from_function(minijinja::filters::selectattr)),
        ("rejectattr", Value::from_function(minijinja::filters::rejectattr)),
        ("unique", Value::from_function(minijinja::filters::unique)),
        ("sort", Value::from_function(minijinja::filters::sort)),
        ("reverse", Value::from_function(minijinja::filters::reverse)),
        ("chain", Value::from_function(minijinja::filters::chain)),
        ("zip", Value::from_function(minijinja::filters::zip)),
        ("items", Value::from_function(minijinja::filters::items)),
        ("dictsort", Value::from_function(minijinja::filters::dictsort)),
        ("groupby", Value::from_function(minijinja::filters::groupby)),
    ];
    debug_assert_eq!(builtins.len(), BOUNDED_FILTERS.len());
    for (name, f) in builtins {
        let (b, f, name) = (budget.clone(), f.clone(), *name);
        env.add_filter(name, move |state: &State, args: Rest<Value>| -> Result<Value, JinjaError> {
            if let Some(bound) = filter_bound(&b, name, &args)? {
                b.alloc(bound)?;
            }
            f.call(state, &args)
        });
    }

    // namespace() and dict() store their arguments: same rules as a list literal. The
    // namespaces are remembered so that walks recognise them.
    let b = budget.clone();
    let namespace = Value::from_function(minijinja::functions::namespace);
    env.add_function("namespace", move |state: &State, args: Rest<Value>| -> Result<Value, JinjaError> {
        let mut bytes = NODE_BYTES * 4;
        for a in args.iter() {
            let shape = b.walk(a, true)?;
            bytes += shape.bytes + shape.nodes * NODE_BYTES;
        }
        b.alloc(bytes)?;
        let ns = namespace.call(state, &args)?;
        let mut list = b.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        // Real templates make one to five; each store walk compares against all of them.
        if list.len() >= MAX_NAMESPACES {
            return Err(limit_error(format!("chat template created more than {MAX_NAMESPACES} namespaces")));
        }
        list.push(ns.clone());
        Ok(ns)
    });
    let b = budget.clone();
    let dict = Value::from_function(minijinja::functions::dict);
    env.add_function("dict", move |state: &State, args: Rest<Value>| -> Result<Value, JinjaError> {
        let mut bytes = NODE_BYTES;
        for a in args.iter() {
            let shape = b.walk(a, true)?;
            bytes += shape.bytes + shape.nodes * NODE_BYTES;
        }
        b.alloc(bytes)?;
        dict.call(state, &args)
    });

    // Everything written out, including what macros and {% set %} blocks capture.
    let b = budget.clone();
    env.set_formatter(move |out: &mut Output, state: &State, value: &Value| -> Result<(), JinjaError> {
        let escaping = !matches!(state.auto_escape(), AutoEscape::None) && !value.is_safe();
        if let Some(s) = value.as_str() {
            b.alloc(s.len() as u64 * if escaping { 6 } else { 1 })?;
            return minijinja::escape_formatter(out, state, value);
        }
        if escaping {
            b.alloc(b.display_len(value, false)?.saturating_mul(6))?;
            return minijinja::escape_formatter(out, state, value);
        }
        let mut s = String::new();
        b.display(value, &mut s)?;
        out.write_str(&s).map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "write failed"))
    });
}

/// Parses `source`, rewrites it (see the module documentation), and renders it with `root` as
/// the context on `env` (which [`install`] prepared with `budget`).
pub(super) fn render(env: &Environment<'_>, budget: &Budget, source: &str, root: Value) -> Result<(String, RenderStats), JinjaError> {
    let limits = budget.limits;
    if source.len() > limits.template_bytes {
        return Err(limit_error(format!("chat template is {} bytes, more than the {} allowed", source.len(), limits.template_bytes)));
    }
    let ws = WhitespaceConfig { keep_trailing_newline: false, lstrip_blocks: true, trim_blocks: true };
    let name = "chat_template";
    // why: SyntaxConfig is a unit struct only without minijinja's `custom_syntax` feature (which
    // any crate in the build may turn on); `default()` compiles either way.
    #[allow(clippy::default_constructed_unit_structs)]
    let tree = parse(source, name, SyntaxConfig::default(), ws)?;
    let tree = rewrite_stmt(&tree);
    let mut codegen = CodeGenerator::new(name, source);
    codegen.compile_stmt(&tree);
    drop(tree);
    let (instructions, blocks) = codegen.finish();
    let mut text = String::new();
    let mut out = make_string_output(&mut text);
    let result = Vm::new(env).eval(&instructions, root, &blocks, &mut out, AutoEscape::None);
    let fuel = match result {
        Ok((_, state)) => state.fuel_levels().map_or(0, |(used, _)| used),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => {
            return Err(limit_error(format!("chat template ran more than {} steps: it loops too much", limits.fuel)).with_source(e));
        }
        Err(e) => return Err(e),
    };
    drop(out);
    let stats = RenderStats { fuel, work: budget.work.load(Ordering::Relaxed), memory: budget.memory.load(Ordering::Relaxed), output_bytes: text.len() as u64 };
    Ok((text, stats))
}

// ---- The syntax-tree rewrite. minijinja's nodes are immutable behind `Spanned`, so the tree is
// ---- copied, with the changes listed in the module documentation.

fn sp<T>(node: T, span: Span) -> Spanned<T> {
    Spanned::new(node, span)
}

/// `name(args...)` calling one of our hooks.
fn hook_call<'a>(name: &'static str, args: Vec<Expr<'a>>, span: Span) -> Expr<'a> {
    Expr::Call(sp(ast::Call { expr: Expr::Var(sp(ast::Var { id: name }, span)), args: args.into_iter().map(CallArg::Pos).collect() }, span))
}

fn wrap<'a>(name: &'static str, e: Expr<'a>) -> Expr<'a> {
    let span = e.span();
    hook_call(name, vec![e], span)
}

fn rewrite_stmts<'a>(v: &[Stmt<'a>]) -> Vec<Stmt<'a>> {
    v.iter().map(rewrite_stmt).collect()
}

fn rewrite_stmt<'a>(s: &Stmt<'a>) -> Stmt<'a> {
    match s {
        Stmt::Template(t) => Stmt::Template(sp(ast::Template { children: rewrite_stmts(&t.children) }, t.span())),
        Stmt::EmitExpr(e) => Stmt::EmitExpr(sp(ast::EmitExpr { expr: rewrite(&e.expr) }, e.span())),
        // Raw text goes through the formatter too (as a safe string: never escaped), so what a
        // loop inside a macro or {% set %} block captures is charged.
        Stmt::EmitRaw(r) => {
            let value = Value::from_safe_string(r.raw.to_string());
            Stmt::EmitExpr(sp(ast::EmitExpr { expr: Expr::Const(sp(ast::Const { value }, r.span())) }, r.span()))
        }
        Stmt::ForLoop(f) => Stmt::ForLoop(sp(
            ast::ForLoop {
                target: rewrite_target(&f.target),
                iter: wrap(hook::WALK, rewrite(&f.iter)),
                filter_expr: f.filter_expr.as_ref().map(rewrite),
                recursive: f.recursive,
                body: rewrite_stmts(&f.body),
                else_body: rewrite_stmts(&f.else_body),
            },
            f.span(),
        )),
        Stmt::IfCond(c) => {
            Stmt::IfCond(sp(ast::IfCond { expr: rewrite(&c.expr), true_body: rewrite_stmts(&c.true_body), false_body: rewrite_stmts(&c.false_body) }, c.span()))
        }
        Stmt::WithBlock(w) => Stmt::WithBlock(sp(
            ast::WithBlock {
                assignments: w.assignments.iter().map(|(t, e)| (rewrite_target(t), rewrite_assigned(t, e))).collect(),
                body: rewrite_stmts(&w.body),
            },
            w.span(),
        )),
        Stmt::Set(set) => Stmt::Set(sp(ast::Set { target: rewrite_target(&set.target), expr: rewrite_assigned(&set.target, &set.expr) }, set.span())),
        Stmt::SetBlock(set) => Stmt::SetBlock(sp(
            ast::SetBlock { target: rewrite_target(&set.target), filter: set.filter.as_ref().map(rewrite), body: rewrite_stmts(&set.body) },
            set.span(),
        )),
        Stmt::AutoEscape(a) => Stmt::AutoEscape(sp(ast::AutoEscape { enabled: rewrite(&a.enabled), body: rewrite_stmts(&a.body) }, a.span())),
        Stmt::FilterBlock(f) => Stmt::FilterBlock(sp(ast::FilterBlock { filter: rewrite(&f.filter), body: rewrite_stmts(&f.body) }, f.span())),
        // Without a loader, includes, imports and extends fail at run time ("template not
        // found"); blocks render in place.
        Stmt::Block(b) => Stmt::Block(sp(ast::Block { name: b.name, required: b.required, body: rewrite_stmts(&b.body) }, b.span())),
        Stmt::Import(i) => Stmt::Import(sp(ast::Import { expr: rewrite(&i.expr), name: rewrite_target(&i.name) }, i.span())),
        Stmt::FromImport(i) => {
            let names = i.names.iter().map(|(n, alias)| (rewrite_target(n), alias.as_ref().map(rewrite_target))).collect();
            Stmt::FromImport(sp(ast::FromImport { expr: rewrite(&i.expr), names }, i.span()))
        }
        Stmt::Extends(x) => Stmt::Extends(sp(ast::Extends { name: rewrite(&x.name) }, x.span())),
        Stmt::Include(i) => Stmt::Include(sp(ast::Include { name: rewrite(&i.name), ignore_missing: i.ignore_missing }, i.span())),
        Stmt::Macro(m) => Stmt::Macro(sp(rewrite_macro(m), m.span())),
        Stmt::CallBlock(c) => Stmt::CallBlock(sp(
            ast::CallBlock { call: sp(rewrite_call(&c.call), c.call.span()), macro_decl: sp(rewrite_macro(&c.macro_decl), c.macro_decl.span()) },
            c.span(),
        )),
        Stmt::Continue(c) => Stmt::Continue(sp(ast::Continue, c.span())),
        Stmt::Break(b) => Stmt::Break(sp(ast::Break, b.span())),
        Stmt::Do(d) => Stmt::Do(sp(ast::Do { call: sp(rewrite_call(&d.call), d.call.span()) }, d.span())),
    }
}

fn rewrite_macro<'a>(m: &ast::Macro<'a>) -> ast::Macro<'a> {
    let defaults = m.defaults.iter().map(|d| if is_const(d) { rewrite(d) } else { wrap(hook::KEEP, rewrite(d)) }).collect();
    ast::Macro { name: m.name, args: m.args.iter().map(rewrite_target).collect(), defaults, body: rewrite_stmts(&m.body) }
}

/// Assignment targets: names, tuples of names, `namespace.attr`.
fn rewrite_target<'a>(e: &Expr<'a>) -> Expr<'a> {
    match e {
        Expr::Var(v) => Expr::Var(sp(ast::Var { id: v.id }, v.span())),
        Expr::List(l) => Expr::List(sp(ast::List { items: l.items.iter().map(rewrite_target).collect() }, l.span())),
        Expr::GetAttr(g) => Expr::GetAttr(sp(ast::GetAttr { expr: rewrite(&g.expr), name: g.name }, g.span())),
        other => rewrite(other),
    }
}

/// The value of `{% set target = e %}`: stored into a namespace, it follows the container rules;
/// unpacked into names, it is walked (unpacking iterates it).
fn rewrite_assigned<'a>(target: &Expr<'a>, e: &Expr<'a>) -> Expr<'a> {
    match target {
        Expr::GetAttr(_) => match accumulation(target, e) {
            Some((op, parts)) => {
                let name = if matches!(op, ast::BinOpKind::Concat) { hook::ACC_CONCAT } else { hook::ACC_ADD };
                hook_call(name, parts.into_iter().map(rewrite).collect(), e.span())
            }
            None => wrap(hook::STORE, rewrite(e)),
        },
        Expr::List(_) => wrap(hook::WALK, rewrite(e)),
        _ if is_const(e) => rewrite(e),
        _ => wrap(hook::KEEP, rewrite(e)),
    }
}

/// `ns.a ~ x ~ y` (or with `+`) assigned to `ns.a`: the operands, `ns.a` first.
fn accumulation<'e, 'a>(target: &Expr<'a>, e: &'e Expr<'a>) -> Option<(ast::BinOpKind, Vec<&'e Expr<'a>>)> {
    let Expr::GetAttr(t) = target else { return None };
    let Expr::Var(ns) = &t.expr else { return None };
    let Expr::BinOp(top) = e else { return None };
    let op = top.op;
    if !matches!(op, ast::BinOpKind::Concat | ast::BinOpKind::Add) {
        return None;
    }
    // The left spine of the same operator, collected right to left.
    let mut rest = Vec::new();
    let mut cur = e;
    while let Expr::BinOp(b) = cur {
        if std::mem::discriminant(&b.op) != std::mem::discriminant(&op) {
            break;
        }
        rest.push(&b.right);
        cur = &b.left;
    }
    match cur {
        Expr::GetAttr(g) if g.name == t.name && matches!(&g.expr, Expr::Var(v) if v.id == ns.id) => {
            rest.push(cur);
            rest.reverse();
            Some((op, rest))
        }
        _ => None,
    }
}

fn rewrite_call<'a>(c: &ast::Call<'a>) -> ast::Call<'a> {
    // The callee keeps its shape (minijinja recognises `loop(...)`, `super()`, methods by it).
    // `loop.changed(x)` keeps x inside the loop object: container rules.
    let (callee, store) = match &c.expr {
        Expr::Var(v) => (Expr::Var(sp(ast::Var { id: v.id }, v.span())), false),
        Expr::GetAttr(g) => (Expr::GetAttr(sp(ast::GetAttr { expr: rewrite(&g.expr), name: g.name }, g.span())), g.name == "changed"),
        other => (rewrite(other), false),
    };
    let guard = if store { hook::STORE } else { hook::KEEP };
    ast::Call { expr: callee, args: c.args.iter().map(|a| rewrite_arg(a, Some(guard))).collect() }
}

fn rewrite_arg<'a>(a: &CallArg<'a>, guard: Option<&'static str>) -> CallArg<'a> {
    let g = |e: &Expr<'a>| match (guard, e) {
        (_, Expr::Const(_)) | (None, _) => rewrite(e),
        (Some(name), _) => wrap(name, rewrite(e)),
    };
    match a {
        CallArg::Pos(e) => CallArg::Pos(g(e)),
        CallArg::Kwarg(name, e) => CallArg::Kwarg(name, g(e)),
        CallArg::PosSplat(e) => CallArg::PosSplat(g(e)),
        CallArg::KwargSplat(e) => CallArg::KwargSplat(g(e)),
    }
}

fn is_const(e: &Expr<'_>) -> bool {
    matches!(e, Expr::Const(_))
}

fn rewrite<'a>(e: &Expr<'a>) -> Expr<'a> {
    use ast::BinOpKind as B;
    match e {
        Expr::Var(v) => Expr::Var(sp(ast::Var { id: v.id }, v.span())),
        Expr::Const(c) => Expr::Const(sp(ast::Const { value: c.value.clone() }, c.span())),
        Expr::Slice(s) => Expr::Slice(sp(
            ast::Slice {
                expr: wrap(hook::SLICE, rewrite(&s.expr)),
                start: s.start.as_ref().map(rewrite),
                stop: s.stop.as_ref().map(rewrite),
                step: s.step.as_ref().map(rewrite),
            },
            s.span(),
        )),
        Expr::UnaryOp(u) => {
            // why: an exhaustive list on purpose, like every other node here: an operator added
            // to minijinja fails to compile instead of passing through the sandbox unreviewed.
            #[allow(clippy::needless_match)]
            let op = match u.op {
                ast::UnaryOpKind::Not => ast::UnaryOpKind::Not,
                ast::UnaryOpKind::Neg => ast::UnaryOpKind::Neg,
            };
            Expr::UnaryOp(sp(ast::UnaryOp { op, expr: rewrite(&u.expr) }, u.span()))
        }
        Expr::BinOp(b) => {
            let (l, r) = (rewrite(&b.left), rewrite(&b.right));
            match b.op {
                B::Concat => hook_call(hook::CONCAT, vec![l, r], b.span()),
                B::Add => hook_call(hook::ADD, vec![l, r], b.span()),
                B::Mul => hook_call(hook::MUL, vec![l, r], b.span()),
                B::Eq | B::Ne | B::Lt | B::Lte | B::Gt | B::Gte | B::In => {
                    let w = |x: Expr<'a>| if is_const(&x) { x } else { wrap(hook::WALK, x) };
                    Expr::BinOp(sp(ast::BinOp { op: b.op, left: w(l), right: w(r) }, b.span()))
                }
                op => Expr::BinOp(sp(ast::BinOp { op, left: l, right: r }, b.span())),
            }
        }
        Expr::Compare(c) => {
            let w = |x: &Expr<'a>| if is_const(x) { rewrite(x) } else { wrap(hook::WALK, rewrite(x)) };
            Expr::Compare(sp(ast::Compare { expr: w(&c.expr), ops: c.ops.iter().map(|o| ast::CompareOp { op: o.op, expr: w(&o.expr) }).collect() }, c.span()))
        }
        Expr::IfExpr(i) => Expr::IfExpr(sp(
            ast::IfExpr { test_expr: rewrite(&i.test_expr), true_expr: rewrite(&i.true_expr), false_expr: i.false_expr.as_ref().map(rewrite) },
            i.span(),
        )),
        Expr::Filter(f) => {
            let mut args = vec![CallArg::Pos(Expr::Const(sp(ast::Const { value: Value::from(f.name) }, f.span())))];
            args.extend(f.args.iter().map(|a| rewrite_arg(a, None)));
            Expr::Filter(sp(ast::Filter { name: hook::FILTER, expr: f.expr.as_ref().map(rewrite), args }, f.span()))
        }
        Expr::Test(t) => {
            let mut args = vec![CallArg::Pos(Expr::Const(sp(ast::Const { value: Value::from(t.name) }, t.span())))];
            args.extend(t.args.iter().map(|a| rewrite_arg(a, None)));
            Expr::Test(sp(ast::Test { name: hook::TEST, expr: rewrite(&t.expr), args }, t.span()))
        }
        Expr::GetAttr(g) => Expr::GetAttr(sp(ast::GetAttr { expr: rewrite(&g.expr), name: g.name }, g.span())),
        Expr::GetItem(g) => {
            let sub = if is_const(&g.subscript_expr) { rewrite(&g.subscript_expr) } else { wrap(hook::WALK, rewrite(&g.subscript_expr)) };
            Expr::GetItem(sp(ast::GetItem { expr: wrap(hook::INDEX, rewrite(&g.expr)), subscript_expr: sub }, g.span()))
        }
        Expr::Call(c) => Expr::Call(sp(rewrite_call(c), c.span())),
        Expr::List(l) => {
            let items = l.items.iter().map(|i| if is_const(i) { rewrite(i) } else { wrap(hook::STORE, rewrite(i)) }).collect();
            Expr::List(sp(ast::List { items }, l.span()))
        }
        Expr::Map(m) => {
            let keys = m.keys.iter().map(|k| if is_const(k) { rewrite(k) } else { wrap(hook::WALK, rewrite(k)) }).collect();
            let values = m.values.iter().map(|v| if is_const(v) { rewrite(v) } else { wrap(hook::STORE, rewrite(v)) }).collect();
            Expr::Map(sp(ast::Map { keys, values }, m.span()))
        }
    }
}
