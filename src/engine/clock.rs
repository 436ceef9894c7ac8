//! Milliseconds from a monotonic clock, natively and in the browser (worker or page).

#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    // performance.now() exists in windows and workers alike; Date.now() is the fallback.
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            let f: js_sys::Function = now.dyn_into().ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

#[cfg(target_arch = "wasm32")]
use wasm_bindgen::JsCast;

/// Lets the host run pending events between steps. In the browser the engine's worker must see
/// `interrupt` messages while a generation runs, and the CPU backend computes synchronously, so
/// this awaits one macrotask (a MessageChannel round trip: unlike setTimeout(0), not clamped to
/// 4 ms). Natively there is nothing to wait for.
#[cfg(not(target_arch = "wasm32"))]
pub async fn yield_now() {}

#[cfg(target_arch = "wasm32")]
pub async fn yield_now() {
    let _ = wasm_bindgen_futures::JsFuture::from(yield_to_event_loop()).await;
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
export function yield_to_event_loop() {
  return new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(0); });
}")]
extern "C" {
    fn yield_to_event_loop() -> js_sys::Promise;
}
