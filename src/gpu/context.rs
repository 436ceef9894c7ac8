//! The GPU context: adapter, device, queue, a pipeline cache and buffer helpers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Kernel, ShaderFeatures};
use crate::{Error, Result};

/// Which arithmetic the kernels use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// f16 when the adapter has shader-f16 and is a real GPU. Software adapters (lavapipe,
    /// SwiftShader) emulate f16 arithmetic, measured twice as slow as f32 on lavapipe.
    #[default]
    Auto,
    /// f32 everywhere (the browser's SwiftShader has no f16, so tests that compare with it force
    /// f32 natively too).
    F32,
    /// f16 whenever the adapter has shader-f16, software adapters included (tests of the f16 path).
    F16,
}

#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Ask the device for at most this maxStorageBufferBindingSize (and maxBufferSize): a
    /// smaller GPU than the adapter, as tests of the limit checks need.
    pub max_binding_bytes: Option<u64>,
}

impl GpuOptions {
    pub fn f32() -> Self {
        GpuOptions { precision: Precision::F32, ..Default::default() }
    }
}

type PipelineKey = (Kernel, String, Vec<(String, u64)>);

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// True when kernels are compiled with `enable f16;` (adapter has SHADER_F16 and not forced off).
    pub f16: bool,
    /// A software adapter (lavapipe, SwiftShader): workgroups run as SIMD lanes of CPU threads, so
    /// kernels take their barrier-free form (see ops::matvec::Form). Public so tests can build
    /// either form on the same adapter.
    pub cpu_like: bool,
    /// Kernels may reduce with subgroup operations (the device has them; natively only: wgpu's web
    /// backend does not request them). Public so tests can turn them off to cover the fallback.
    pub subgroups: bool,
    /// What the kernels' prelude is compiled with (fixed when the device is created).
    features: ShaderFeatures,
    pipelines: RefCell<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Bytes of GPU buffers created through this context (reported by `bench`).
    allocated: Cell<u64>,
    /// The first uncaptured device error (validation, out of memory), surfaced by take_error().
    first_error: Arc<Mutex<Option<String>>>,
    /// Set once the device is lost (wgpu's device-lost callback, an uncaptured error saying so, a
    /// failed readback map): sticky, every later step and readback fails with Error::DeviceLost.
    lost: Arc<Mutex<Lost>>,
}

/// The device's loss: why, and the readbacks waiting to be told.
#[derive(Default)]
struct Lost {
    message: Option<String>,
    waiters: Vec<futures_channel::oneshot::Sender<()>>,
}

impl Lost {
    fn set(&mut self, message: String) {
        if self.message.is_none() {
            self.message = Some(message);
        }
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// An uncaptured error that means the device is gone rather than a bug in a call. wgpu reports
/// loss through the device-lost callback and drops errors of the DeviceLost type, but a call made
/// while the loss is under way can still be refused with a message naming it. Validation errors
/// are bugs (GPUError); out of memory stays GPUError too: the device lives on, and loading the
/// model again would not help.
fn means_loss(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["device lost", "device is lost", "device was lost", "lost device", "device has been destroyed", "device is destroyed", "device was destroyed"]
        .iter()
        .any(|p| m.contains(p))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gpu {
    pub async fn new(opts: &GpuOptions) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| Error::WebGpuUnavailable(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let want_f16 = adapter.features().contains(wgpu::Features::SHADER_F16)
            && match opts.precision {
                Precision::Auto => !software,
                Precision::F32 => false,
                Precision::F16 => true,
            };
        let mut features = wgpu::Features::empty();
        if want_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Subgroup shuffles speed up the GPU form's reductions. Software adapters never reduce
        // across lanes, but lavapipe has them, which lets the tests cover that path.
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP);
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        // Ask for what the adapter has: wgpu's defaults cap storage bindings at 128 MiB.
        let mut limits = adapter.limits();
        if let Some(max) = opts.max_binding_bytes {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(max);
            limits.max_buffer_size = limits.max_buffer_size.min(max);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("mobilellm"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::WebGpuUnavailable(format!("device request failed: {e}")))?;
        let first_error: Arc<Mutex<Option<String>>> = Arc::default();
        let lost: Arc<Mutex<Lost>> = Arc::default();
        let (slot, lost_slot) = (first_error.clone(), lost.clone());
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let msg = e.to_string();
            if means_loss(&msg) {
                lock(&lost_slot).set(msg);
                return;
            }
            let mut s = lock(&slot);
            if s.is_none() {
                *s = Some(msg);
            }
        }));
        // In the browser the device's `lost` promise; natively wgpu-core calls this from a poll
        // once the device is invalid (destroyed, or the driver reported it lost).
        let lost_slot = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed",
                _ => "lost",
            };
            lock(&lost_slot).set(if message.is_empty() { why.to_string() } else { format!("{why}: {message}") });
        });
        Ok(Gpu {
            first_error,
            lost,
            device,
            queue,
            info,
            limits,
            f16: want_f16,
            cpu_like: software,
            subgroups,
            features: ShaderFeatures { f16: want_f16, subgroups },
            pipelines: RefCell::new(HashMap::new()),
            allocated: Cell::new(0),
        })
    }

    /// The pipeline for `kernel`'s entry point with these override constants, compiled once.
    /// Uses the default (shader-derived) bind group layout: bind groups must name exactly the
    /// bindings the specialised entry point uses.
    pub fn pipeline(&self, kernel: Kernel, entry: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let key: PipelineKey = (kernel, entry.to_string(), constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect());
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(entry), source: wgpu::ShaderSource::Wgsl(kernel.source(self.features).into()) });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes shared memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.pipelines.borrow_mut().insert(key, pipeline.clone());
        pipeline
    }

    /// A storage buffer (read/write in shaders, copyable both ways). Sizes round up to 16 bytes
    /// (kernels read vectors as vec4s: the last one stays inside), and are at least 16.
    pub fn storage_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(16);
        self.allocated.set(self.allocated.get() + size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `bytes` (the rest of its 16-byte rounding is zeros).
    pub fn storage_buffer_init(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let buf = self.storage_buffer(label, bytes.len() as u64);
        let whole = bytes.len() / 4 * 4;
        self.queue.write_buffer(&buf, 0, &bytes[..whole]);
        if whole < bytes.len() {
            let mut tail = bytes[whole..].to_vec();
            tail.resize(4, 0);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        buf
    }

    pub fn uniform_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        let size = size.next_multiple_of(16);
        self.allocated.set(self.allocated.get() + size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A MAP_READ | COPY_DST buffer for reading results back.
    pub fn staging_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        let size = size.max(4).next_multiple_of(4);
        self.allocated.set(self.allocated.get() + size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Bind group for `pipeline`'s group 0 with `buffers[i]` (whole buffer) at binding `i`.
    pub fn bind_group(&self, label: &str, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> =
            buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.get_bind_group_layout(0), entries: &entries })
    }

    /// Maps `staging` (already filled by a submitted copy) and returns its first `size` bytes.
    /// Awaits the map callback: natively by polling the device, in the browser by yielding.
    /// A lost device (before or while waiting) is Error::DeviceLost: the wait always settles.
    pub async fn read_staging(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        self.check_lost()?;
        let (tx, rx) = futures_channel::oneshot::channel();
        let slice = staging.slice(0..size.next_multiple_of(4));
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let mapped = self.callback(rx, "map").await;
        // The map failed, or its callback was dropped: with our buffers (never mapped twice, sized
        // by us) that is the device going away, whether or not its lost callback has run yet.
        let mapped = match mapped {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("buffer map failed: {e}")),
            Err(e) => Err(e.to_string()),
        };
        // (An error already reported explains it otherwise: a bug, not a loss.)
        if let Err(e) = mapped {
            self.check_lost()?;
            if let Some(v) = self.first_error_now() {
                return Err(Error::Gpu(format!("{e}, after: {v}")));
            }
            lock(&self.lost).set(e.clone());
            return Err(Error::DeviceLost(e));
        }
        let bytes = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("mapped range: {e}")))?;
            view[..size as usize].to_vec()
        };
        staging.unmap();
        Ok(bytes)
    }

    /// Waits until the GPU has finished everything submitted so far (profiling).
    pub async fn wait_idle(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.callback(rx, "work-done").await
    }

    /// The value a wgpu callback sends on `rx`: natively by polling the device until the GPU is
    /// done, in the browser by yielding until the callback runs.
    /// A device lost meanwhile ends the wait with Error::DeviceLost (the browser may never call
    /// back on a lost device).
    async fn callback<T>(&self, mut rx: futures_channel::oneshot::Receiver<T>, what: &str) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            self.check_lost()?;
            return Err(Error::Gpu(format!("poll: {e}")));
        }
        let mut lost_rx = {
            let mut lost = lock(&self.lost);
            if let Some(m) = &lost.message {
                return Err(Error::DeviceLost(m.clone()));
            }
            // (Waits that ended dropped their receiver: forget them, or every step would leave one.)
            lost.waiters.retain(|w| !w.is_canceled());
            let (tx, rx) = futures_channel::oneshot::channel();
            lost.waiters.push(tx);
            rx
        };
        use std::future::Future;
        use std::pin::Pin;
        use std::task::Poll;
        let r = std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(Some(v));
            }
            match Pin::new(&mut lost_rx).poll(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match r {
            Some(Ok(v)) => Ok(v),
            Some(Err(_)) => Err(Error::Gpu(format!("{what} callback dropped"))),
            None => Err(self.check_lost().err().unwrap_or_else(|| Error::DeviceLost(format!("{what}: device lost")))),
        }
    }

    /// Copies `size` bytes of `src` at `offset` into a fresh staging buffer and reads them.
    /// For tests and one-off reads; the engine keeps its own staging buffer.
    pub async fn read_buffer(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.staging_buffer("read_buffer", size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size.next_multiple_of(4));
        self.queue.submit([enc.finish()]);
        let out = self.read_staging(&staging, size).await;
        staging.destroy();
        out
    }

    /// Reads back f32 values (test helper).
    pub async fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        let bytes = self.read_buffer(src, 0, 4 * n as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Encodes `ops` into one compute pass of one encoder and submits it once.
    pub fn run_ops(&self, ops: &[&super::Op], step: &super::StepParams, step_buffer: &wgpu::Buffer) {
        self.queue.write_buffer(step_buffer, 0, bytemuck::bytes_of(step));
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for op in ops {
                op.encode(&mut pass, step);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    /// Returns (and clears) the first device error seen since the last call, as Error::Gpu; a
    /// lost device (sticky) as Error::DeviceLost.
    pub fn take_error(&self) -> Result<()> {
        self.check_lost()?;
        match lock(&self.first_error).take() {
            Some(msg) => Err(Error::Gpu(msg)),
            None => Ok(()),
        }
    }

    fn first_error_now(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// Error::DeviceLost once the device is lost (from then on, for good).
    pub fn check_lost(&self) -> Result<()> {
        match &lock(&self.lost).message {
            Some(m) => Err(Error::DeviceLost(m.clone())),
            None => Ok(()),
        }
    }

    /// Destroys the device, as a driver reset would lose it (tests of the DeviceLost path). Its
    /// buffers are freed; the lost callback reports it (natively at the next poll).
    pub fn lose_device(&self) {
        self.device.destroy();
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.get()
    }

    pub fn adapter_summary(&self) -> String {
        format!(
            "{} ({:?}, {:?}){}{}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            if self.f16 { ", f16" } else { ", f32" },
            if self.features.subgroups { format!(", subgroups {}-{}", self.info.subgroup_min_size, self.info.subgroup_max_size) } else { String::new() }
        )
    }
}
