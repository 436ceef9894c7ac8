//! Chat-template rendering (Jinja, via minijinja) with a documented plain fallback.
//!
//! Set up as HF transformers' `apply_chat_template`: `trim_blocks` and `lstrip_blocks` on, the
//! context `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, a `raise_exception`
//! function, `strftime_now` and `{% generation %}` blocks ([`chat_compat`]), a Python-style
//! `tojson` filter, and the Python string/dict methods templates call (`.strip()`,
//! `.startswith()`, `.items()`, ...) that minijinja does not have.
//!
//! The template comes from the model file, so it runs under limits ([`chat_limits`]): a template
//! that loops, recurses or grows text or data without end is a `ChatTemplateError` quickly.

use std::sync::Arc;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind, State};

use super::chat_compat;
use super::chat_limits::{self, Budget, NODE_WORK};
pub use super::chat_limits::{ChatLimits, RenderStats};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Renders `messages` with `template` (the GGUF's tokenizer.chat_template) as HF transformers
/// does (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`).
/// Without a template, the plain fallback is used:
/// "{system}\n\n" if there is a system message, then for each turn "User: {content}\n" /
/// "Assistant: {content}\n", ending with "Assistant:" when add_generation_prompt.
///
/// The template runs under [`ChatLimits::for_input`] of the conversation's size.
pub fn render_chat(template: Option<&str>, messages: &[ChatMessage], add_generation_prompt: bool, bos_token: &str, eos_token: &str) -> crate::Result<String> {
    render_chat_with_stats(template, messages, add_generation_prompt, bos_token, eos_token, None).map(|(text, _)| text)
}

/// [`render_chat`] with explicit limits (`None`: [`ChatLimits::for_input`]), also returning what
/// the render used (all zero for the plain fallback).
pub fn render_chat_with_stats(
    template: Option<&str>,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    limits: Option<ChatLimits>,
) -> crate::Result<(String, RenderStats)> {
    let Some(template) = template.filter(|t| !t.trim().is_empty()) else {
        return Ok((fallback(messages, add_generation_prompt), RenderStats::default()));
    };
    let limits = limits.unwrap_or_else(|| ChatLimits::for_input(input_bytes(messages, bos_token, eos_token)));
    let budget = Arc::new(Budget::new(limits));
    let env = environment(&budget);
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    let source = chat_compat::rewrite_generation_blocks(template);
    chat_limits::render(&env, &budget, &source, ctx).map_err(|e| crate::Error::ChatTemplate(describe(&e)))
}

/// The size of a conversation as the limits see it.
pub fn input_bytes(messages: &[ChatMessage], bos_token: &str, eos_token: &str) -> usize {
    messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>() + bos_token.len() + eos_token.len()
}

fn fallback(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut s = String::new();
    for m in messages {
        match m.role.as_str() {
            "system" => {
                s.push_str(&m.content);
                s.push_str("\n\n");
            }
            "assistant" => s.push_str(&format!("Assistant: {}\n", m.content)),
            _ => s.push_str(&format!("User: {}\n", m.content)),
        }
    }
    if add_generation_prompt {
        s.push_str("Assistant:");
    }
    s
}

/// The error with its chain (minijinja puts the template location in the source errors).
fn describe(e: &JinjaError) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn environment(budget: &Arc<Budget>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function("raise_exception", |msg: String| -> Result<Value, JinjaError> { Err(JinjaError::new(ErrorKind::InvalidOperation, msg)) });
    env.add_function("strftime_now", chat_compat::strftime_now);
    let b = budget.clone();
    env.add_filter("tojson", move |value: Value, kwargs: Kwargs| tojson(&b, value, kwargs));
    let b = budget.clone();
    env.set_unknown_method_callback(move |state: &State, value: &Value, method: &str, args: &[Value]| python_method(&b, state, value, method, args));
    chat_limits::install(&mut env, budget);
    env
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`, which HF's `tojson` calls:
/// ", " and ": " separators, no HTML escaping.
fn tojson(budget: &Budget, value: Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    // Bound the output before building anything: escapes are at most 6 bytes per byte, and each
    // value adds quotes, separators, a number, a newline and its indentation.
    let shape = budget.walk(&value, false)?;
    let per_node = 40u64.saturating_add((indent.unwrap_or(0) as u64).saturating_mul(shape.depth as u64 + 1));
    budget.alloc(shape.bytes.saturating_mul(6).saturating_add(shape.nodes.saturating_mul(per_node)))?;
    let json = serde_json::to_value(&value).map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).expect("string"));
                out.push_str(": ");
                write_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).expect("json")),
    }
}

/// The Python methods chat templates call on strings and dicts, charged to the budget before
/// they allocate.
fn python_method(budget: &Budget, _state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, JinjaError> {
    let arg_str = |i: usize| args.get(i).and_then(|a| a.as_str()).map(str::to_string);
    for a in args {
        budget.walk(a, false)?;
    }
    if let Some(s) = value.as_str() {
        let len = s.len() as u64;
        budget.work(len + NODE_WORK)?;
        match method {
            "strip" | "lstrip" | "rstrip" => budget.alloc(len)?,
            "upper" | "lower" | "title" | "capitalize" => budget.alloc(3 * len)?,
            "split" => budget.alloc(chat_limits::split_pieces(budget, s, arg_str(0).as_deref())?.saturating_mul(64).saturating_add(len))?,
            "replace" => {
                if let (Some(a), Some(b)) = (arg_str(0), arg_str(1)) {
                    budget.alloc(chat_limits::replace_len(budget, s, &a, &b, None)?)?;
                }
            }
            _ => {}
        }
        let chars: Option<Vec<char>> = arg_str(0).map(|c| c.chars().collect());
        let strip_set = |c: char| match &chars {
            Some(set) => set.contains(&c),
            None => c.is_whitespace(),
        };
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(strip_set)),
            "lstrip" => Value::from(s.trim_start_matches(strip_set)),
            "rstrip" => Value::from(s.trim_end_matches(strip_set)),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "title" => Value::from(title_case(s)),
            "capitalize" => {
                let mut c = s.chars();
                Value::from(c.next().map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect::<String>()).unwrap_or_default())
            }
            "startswith" | "endswith" => {
                let prefixes: Vec<String> = match args.first() {
                    Some(a) if a.kind() == ValueKind::Seq => a.try_iter()?.filter_map(|x| x.as_str().map(str::to_string)).collect(),
                    _ => arg_str(0).into_iter().collect(),
                };
                let hit = prefixes.iter().any(|p| if method == "startswith" { s.starts_with(p.as_str()) } else { s.ends_with(p.as_str()) });
                Value::from(hit)
            }
            "split" => match arg_str(0) {
                Some(sep) => Value::from(s.split(sep.as_str()).map(Value::from).collect::<Vec<_>>()),
                None => Value::from(s.split_whitespace().map(Value::from).collect::<Vec<_>>()),
            },
            "replace" => match (arg_str(0), arg_str(1)) {
                (Some(a), Some(b)) => Value::from(s.replace(a.as_str(), b.as_str())),
                _ => return Err(JinjaError::new(ErrorKind::MissingArgument, "replace(old, new)")),
            },
            "find" => Value::from(arg_str(0).and_then(|p| s.find(p.as_str())).map(|b| s[..b].chars().count() as i64).unwrap_or(-1)),
            "count" => Value::from(arg_str(0).map(|p| if p.is_empty() { 0 } else { s.matches(p.as_str()).count() }).unwrap_or(0)),
            _ => return Err(JinjaError::from(ErrorKind::UnknownMethod)),
        });
    }
    if value.kind() == ValueKind::Map {
        if matches!(method, "items" | "keys" | "values") {
            let n = value.len().unwrap_or(0) as u64;
            budget.work(n * NODE_WORK)?;
            budget.alloc(n * 128)?;
        }
        return match method {
            "items" => {
                Ok(Value::from(value.try_iter()?.map(|k| Ok(Value::from(vec![k.clone(), value.get_item(&k)?]))).collect::<Result<Vec<_>, JinjaError>>()?))
            }
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => Ok(Value::from(value.try_iter()?.map(|k| value.get_item(&k)).collect::<Result<Vec<_>, _>>()?)),
            "get" => {
                let key = args.first().cloned().unwrap_or(Value::UNDEFINED);
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() { args.get(1).cloned().unwrap_or(Value::from(())) } else { v })
            }
            _ => Err(JinjaError::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(JinjaError::from(ErrorKind::UnknownMethod))
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if prev_alpha {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_alpha = c.is_alphabetic();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn fallback_format() {
        let m = [msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Bye")];
        assert_eq!(render_chat(None, &m, true, "", "").unwrap(), "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:");
        assert_eq!(render_chat(Some("  "), &m[1..2], false, "", "").unwrap(), "User: Hi\n");
    }

    #[test]
    fn python_methods_tojson_and_blocks() {
        let t =
            "{% for m in messages %}\n  {% if m.content.strip().startswith('x') %}{{ m.role.upper() }}{% endif %}\n{% endfor %}{{ {'a': [1, 'é']}|tojson }}";
        let out = render_chat(Some(t), &[msg("user", "  xy "), msg("bot", "no")], false, "", "").unwrap();
        assert_eq!(out, "USER{\"a\": [1, \"é\"]}");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{% if messages[0].role != 'system' %}{{ raise_exception('need a system message') }}{% endif %}";
        let err = render_chat(Some(t), &[msg("user", "x")], false, "", "").unwrap_err();
        assert!(err.to_string().contains("need a system message"), "{err}");
        assert_eq!(err.code(), "ChatTemplateError");
    }
}
