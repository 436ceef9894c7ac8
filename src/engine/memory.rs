//! Will an allocation fit? In wasm32 the whole heap is one linear memory of at most 4 GiB that
//! never shrinks, so a model that cannot fit must be refused before anything is allocated, with a
//! typed error rather than an abort in the middle of a load.

use crate::{Error, Result};

/// Bytes kept free above any allocation the engine checks: tokenizer, activations, buffers the
/// host copies through, and the allocator's own fragmentation.
pub const HEADROOM: u64 = 64 << 20;

/// The most bytes this build's heap can hold.
pub fn address_space() -> u64 {
    if cfg!(target_pointer_width = "32") {
        4 << 30
    } else {
        u64::MAX / 2
    }
}

/// Bytes the heap already spans (wasm: the linear memory's current size; natively 0: the OS
/// reports failures itself).
fn in_use() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Errors with ModelTooLarge when `bytes` more (plus HEADROOM) would not fit in what this build
/// can address. `what` names the allocation in the message.
pub fn check_memory(bytes: u64, what: &str) -> Result<()> {
    let limit = address_space();
    let need = in_use().saturating_add(bytes).saturating_add(HEADROOM);
    if need > limit {
        return Err(Error::ModelTooLarge(format!(
            "{what} needs {} MiB; with {} MiB already in use this build can address {} MiB",
            bytes >> 20,
            in_use() >> 20,
            limit >> 20
        )));
    }
    Ok(())
}
