// TypeScript declarations for mobilellm-web: the public API of mobilellm.js.
// Kept by hand next to the JS; tests/browser/npm.test.mjs type-checks a sample that uses every
// export (strict) and a wrong sample that must fail, and checks every error name the sources
// throw is listed in MobileLLMErrorName.

/** The stable codes of MobileLLMError#name: branch on these, not on messages. */
export type MobileLLMErrorName =
  /** The model (or the engine's .wasm) could not be fetched: HTTP error, network, CORS, short body. */
  | 'DownloadFailed'
  /** Not a GGUF file, or a corrupt one (every offset and count is checked). */
  | 'InvalidModelFile'
  /** A valid GGUF of an architecture or tensor type the engine does not run. */
  | 'UnsupportedModel'
  | 'TokenizerError'
  | 'ChatTemplateError'
  /** backend "webgpu" in a browser without WebGPU (or without a usable adapter). */
  | 'WebGPUUnavailable'
  | 'GPUError'
  /** The GPU device was lost (driver reset, GPU process crash): this call and every later one fail
   * with it; load the model again (from the cache: no download) to go on. */
  | 'DeviceLost'
  /** The model or its KV cache does not fit in wasm32 memory (4 GiB); refused before allocating. */
  | 'ModelTooLarge'
  /** The prompt does not fit in the context (a reply that fills it ends with finish_reason "length"). */
  | 'ContextFull'
  /** An AbortSignal fired (load or generation). */
  | 'Aborted'
  | 'InvalidArgument'
  /** A Hugging Face checkpoint the converter refuses (architecture, biases, RoPE scaling, unsafe pickle). */
  | 'ConversionError'
  /** HTTP 401/403 from the Hub: the repository needs an access token (hfToken), or refused the one given. */
  | 'GatedModel'
  | 'IOError'
  /** The model was unloaded (or its worker ended) while the call was pending. */
  | 'Unloaded'
  /** A panic inside the engine or a worker failure; the message says where. */
  | 'InternalError';

/** Every failure of the API (promise rejections and stream iteration) is one of these. */
export class MobileLLMError extends Error {
  constructor(name: MobileLLMErrorName, message: string, options?: ErrorOptions);
  name: MobileLLMErrorName;
}

/** Load progress; `loaded`/`total` are bytes, `rate` bytes per second while downloading. */
export interface LoadProgress {
  /** convert: `loaded`/`total` count tensors; store: the converted model is written to the cache. */
  phase: 'download' | 'convert' | 'store' | 'cache' | 'read' | 'compile' | 'ready';
  /** Downloads of a Hugging Face checkpoint: the file being fetched. */
  file?: string;
  loaded?: number;
  total?: number;
  rate?: number;
  fromCache?: boolean;
  /** convert: GGUF bytes written so far. */
  bytes?: number;
}

/** Which engine runs the model: the GPU through WebGPU, or the CPU (wasm SIMD, threads). */
export type Backend = 'webgpu' | 'cpu';

/** The engine's wasm builds: one thread or threads (shared memory), plain or relaxed SIMD. */
export type EngineBuild = 'pkg' | 'pkg-relaxed' | 'pkg-mt' | 'pkg-mt-relaxed';

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** Cancels the download and load; the promise rejects with name "Aborted". */
  signal?: AbortSignal;
  /**
   * "auto" (default): WebGPU when the browser offers a hardware GPU adapter, otherwise the CPU
   * backend (no WebGPU, no adapter, or a software adapter such as SwiftShader or llvmpipe).
   */
  backend?: Backend | 'auto';
  /**
   * CPU backend threads (this worker plus pool workers). Default: the cores, at most 4. More than
   * one needs a cross-origin isolated page (COOP/COEP headers); otherwise one thread runs and
   * `loadStats.engine.threadsNote` says why.
   */
  threads?: number;
  /** Testing and debugging: one wasm build instead of the automatic choice. */
  build?: EngineBuild;
  /** WebGPU: use the f32 kernels even when the GPU has shader-f16. Default false. */
  forceF32?: boolean;
  /** KV-cache size in tokens; 0 (default) = min(model context, 4096). */
  contextLength?: number;
  /** Keep the downloaded model in the Cache API and load it from there next time. Default true. */
  useCache?: boolean;
  /**
   * Where the engine's worker script is, for apps that host the package files themselves.
   * Default: worker.js next to this module. Must be same-origin (a browser rule for workers);
   * the worker imports ./pkg/mobilellm_web.js relative to itself.
   */
  workerUrl?: string | URL;
  /**
   * Where the engine's .wasm is (served as application/wasm). Default: `<build>/mobilellm_web_bg.wasm`
   * next to the worker. A single URL is the one-thread plain-SIMD build (`pkg`), which then runs
   * whatever the backend; an object gives a URL per build. Relative URLs resolve against the page.
   */
  wasmUrl?: string | URL | Partial<Record<EngineBuild, string | URL>>;
  /** Hugging Face access token for gated or private repositories; sent to huggingface.co only, never stored. */
  hfToken?: string;
  /** Where bare repository names resolve. Default https://huggingface.co. */
  hubUrl?: string;
  /** Repository revision (branch, tag or commit). Default "main" (or the name's @revision). */
  revision?: string;
  /** GGUF type a checkpoint is converted to. Default "q8_0". */
  convertType?: ConvertType;
}

export type ConvertType = 'q8_0' | 'q4_k_m' | 'q4_1' | 'q4_0' | 'f16' | 'f32';

/** How a Hugging Face checkpoint was converted in the browser (first load only). */
export interface ConversionStats {
  report: {
    type: string; arch: string; source_format: string; tokenizer_source: string; n_tensors: number; n_params: number;
    n_vocab: number; n_layers: number; block_repeat: number; tied_embeddings: boolean; f16_fallback: string[];
    /** Tensors per GGUF type, e.g. {F32: 61, Q5_0: 150, Q6_K: 14, ...}. */
    tensor_types: Record<string, number>; bytes_written: number; summary: string;
  };
  download_bytes: number;
  /** Where the checkpoint was kept while converting. */
  scratch: 'opfs' | 'memory';
  timings: { download_ms: number; convert_ms: number; store_ms: number };
  /** The conversion worker's wasm memory (its peak: wasm memory never shrinks). */
  wasm_memory_bytes: number;
}

/** The loaded model and what runs it. */
export interface ModelInfo {
  /** "Llama" or "MobileLLM". */
  arch: string;
  n_vocab: number;
  dim: number;
  n_layers: number;
  /** MobileLLM-LS layer sharing: each block runs this many times (1 = none). */
  block_repeat: number;
  n_heads: number;
  n_kv_heads: number;
  /** The model's trained context length. */
  context_length: number;
  /** The KV-cache capacity of this session. */
  n_ctx: number;
  file_bytes: number;
  has_chat_template: boolean;
  /** "webgpu" or "cpu". */
  backend: Backend;
  /** Threads computing a step (1 on WebGPU). */
  threads: number;
  /** The CPU kernels' SIMD: "relaxed", "simd128" or "scalar". */
  simd: string;
  /** The device: "SwiftShader (BrowserWebGpu, Cpu), f32", or "CPU, 2 threads, relaxed". */
  adapter: string;
  /** True when the GPU kernels run in f16 (shader-f16). */
  f16: boolean;
  /** Bytes held for the weights (GPU buffers, or the GGUF kept as it is by the CPU backend). */
  gpu_bytes: number;
  /** The absolute model URL. */
  url: string;
}

/** What runs the model, and why. */
export interface EngineStats {
  backend: Backend;
  /** Threads in use, and what was asked for. */
  threads: number;
  requestedThreads: number;
  /** Why fewer threads run than asked for (no cross-origin isolation, a pool that failed to start), else null. */
  threadsNote: string | null;
  simd: string;
  build: EngineBuild;
  crossOriginIsolated: boolean;
  /** Why this backend: "asked for cpu", "the WebGPU adapter is a software one (google swiftshader)", ... */
  reason: string;
  /** WebGPU: the most bytes of the file held in wasm memory at once while loading (tensors stream to the GPU as they arrive); null on the CPU backend. */
  peakBufferedBytes: number | null;
}

export interface LoadStats {
  fromCache: boolean;
  timings: { download_ms: number; read_ms: number; compile_ms: number; total_ms: number };
  /** Set when this load converted a Hugging Face checkpoint. */
  conversion: ConversionStats | null;
  engine: EngineStats;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

/** Sampling options; unset ones take the engine's defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05). */
export interface ChatCompletionRequestBase {
  /** The whole conversation: the session reuses the KV cache of the longest common prefix. */
  messages: readonly ChatMessage[];
  /** 0 = greedy. */
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  /** Default: until an end-of-generation token or the context is full. */
  max_tokens?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  /** Aborting rejects the call (or the stream's next()) with name "Aborted". */
  signal?: AbortSignal;
  /** Keep going past end-of-generation tokens (benchmarks). */
  ignore_eos?: boolean;
  /** Completion mode: no chat template; the messages' contents, concatenated, are the text to continue. */
  raw?: boolean;
}

export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase {
  stream: true;
}

export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase {
  stream?: false | null;
}

export type ChatCompletionRequest = ChatCompletionRequestStreaming | ChatCompletionRequestNonStreaming;

/** "length": max_tokens reached or the context is full; "abort": interrupt() or a left for-await loop. */
export type FinishReason = 'stop' | 'length' | 'abort';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens actually run (the rest came from the KV cache of the previous call); null if unknown (interrupted). */
  prefill_tokens: number | null;
}

/** Fields are null when the generation was interrupted before the engine measured them. */
export interface CompletionTimings {
  prefill_ms: number | null;
  decode_ms: number | null;
  /** Time to first token. */
  ttft_ms: number | null;
  prefill_tokens_per_s: number | null;
  decode_tokens_per_s: number | null;
}

/** Engine details; an interrupted generation answered early has only completion_token_ids. */
export interface CompletionDebug {
  prompt_token_ids: number[] | null;
  completion_token_ids: number[];
  /** Tokens in the KV cache after the call. */
  cached_tokens: number | null;
  n_ctx: number | null;
  /** GPU dispatches and bytes read back per decode step. */
  dispatches_per_step?: number;
  readback_bytes_per_step?: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  /** Unix seconds. */
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string };
    finish_reason: FinishReason;
    logprobs: null;
  }>;
  usage: CompletionUsage;
  timings: CompletionTimings;
  debug: CompletionDebug;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    /** The first chunk carries role "assistant"; the last one an empty delta. */
    delta: { role?: 'assistant'; content?: string };
    /** null until the last chunk. */
    finish_reason: FinishReason | null;
    logprobs: null;
  }>;
  /** Only on the last chunk. */
  usage?: CompletionUsage;
  timings?: CompletionTimings;
  debug?: CompletionDebug;
}

/** What a stream resolves `finished` to once the generation ends. */
export interface ChatCompletionStreamResult {
  finish_reason: FinishReason;
  usage: CompletionUsage;
  timings: CompletionTimings;
  debug: CompletionDebug;
}

/** An async iterable of `Chunk`s; leaving a for-await loop early stops the generation. */
export interface GenerationStream<Chunk> extends AsyncIterable<Chunk> {
  [Symbol.asyncIterator](): GenerationStream<Chunk>;
  next(): Promise<IteratorResult<Chunk, undefined>>;
  return(): Promise<IteratorReturnResult<undefined>>;
  /** Resolves with usage and timings when the generation ends (rejects as the iteration would). */
  readonly finished: Promise<ChatCompletionStreamResult>;
}

export interface ChatCompletionStream extends GenerationStream<ChatCompletionChunk> {}

export interface ChatCompletions {
  create(request: ChatCompletionRequestStreaming): Promise<ChatCompletionStream>;
  create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion | ChatCompletionStream>;
}

/** completions.create: plain text completion (base models), OpenAI's legacy shape. */
export interface CompletionRequestBase extends Omit<ChatCompletionRequestBase, 'messages' | 'raw'> {
  /** The raw text the model continues (no chat template). */
  prompt: string;
}
export interface CompletionRequestStreaming extends CompletionRequestBase { stream: true }
export interface CompletionRequestNonStreaming extends CompletionRequestBase { stream?: false | null }

export interface TextCompletionChoice {
  index: number;
  text: string;
  /** null until the last chunk of a stream. */
  finish_reason: FinishReason | null;
  logprobs: null;
}

export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: TextCompletionChoice[];
  /** On the non-streamed result and the last chunk. */
  usage?: CompletionUsage;
  timings?: CompletionTimings;
  debug?: CompletionDebug;
}

export interface TextCompletionStream extends GenerationStream<TextCompletion> {}

export interface Completions {
  create(request: CompletionRequestStreaming): Promise<TextCompletionStream>;
  create(request: CompletionRequestNonStreaming): Promise<TextCompletion>;
  create(request: CompletionRequestStreaming | CompletionRequestNonStreaming): Promise<TextCompletion | TextCompletionStream>;
}

/** Per-kernel times of a decode step (debug.profileDecode). */
export interface DecodeProfile {
  /** Positions already in the KV cache when the profiled step runs. */
  kv_len: number;
  /** One whole step as the engine runs it (WebGPU: one submit, waited for). */
  step_ms: number;
  /** WebGPU: an empty submit and its wait, the fixed cost included in each op's measurement; CPU: 0. */
  round_trip_ms: number;
  /** Largest first; `op` is the kernel and its grid, e.g. "matmul 192x1x1". */
  ops: Array<{ op: string; per_step: number; ms_per_step: number }>;
}

/** A model in the Cache API. */
export interface CachedModel {
  url: string;
  size: number;
  /** ISO 8601 time of the download. */
  cachedAt: string | null;
}

/**
 * One loaded model in its own Web Worker, with one KV-cached conversation. Create it with
 * `MobileLLM.load`.
 */
export class MobileLLM {
  private constructor();

  /**
   * Downloads (or reads from the cache) and loads a GGUF model from any CORS-enabled URL, or a
   * Hugging Face checkpoint ("owner/name", "hf:owner/name@revision", "https://huggingface.co/owner/name",
   * or a folder URL ending with "/"), converted to GGUF in the browser once and then cached.
   */
  static load(url: string | URL, options?: LoadOptions): Promise<MobileLLM>;

  readonly info: ModelInfo;
  readonly loadStats: LoadStats;
  /** The backend running the model. */
  readonly backend: Backend;
  readonly chat: { readonly completions: ChatCompletions };
  /** Completion mode for base models: the prompt is raw text, continued without a chat template. */
  readonly completions: Completions;

  /** Debugging and tests: teacher-forced logits and prompt tokenisation on the same engine. */
  readonly debug: {
    /** Top-`k` (default 2) [token id, logit] pairs after every position of `tokens`. */
    topLogits(tokens: ArrayLike<number> | Iterable<number>, k?: number): Promise<Array<Array<[number, number]>>>;
    /** The chat-template rendering of `messages` and its token ids. */
    promptTokens(messages: readonly ChatMessage[]): Promise<{ text: string; ids: number[] }>;
    /** Per-kernel times of `steps` (default 1) decode steps after `messages`; forgets the cached conversation. */
    profileDecode(messages: readonly ChatMessage[], steps?: number): Promise<DecodeProfile>;
    /** Memory now: the worker's wasm heap (it never shrinks), the GPU buffers the engine created (WebGPU; 0 on the CPU), the weights. */
    stats(): Promise<{ wasm_memory_bytes: number; gpu_allocated_bytes: number; weight_bytes: number }>;
    /** The CPU kernels' self-test inside the loaded wasm build (SIMD vs scalar vs an f64 reference). */
    cpuSelftest(): Promise<{ ok: boolean; simd: string; cases: Array<{ name: string; max_abs_err: number; max_rel_err: number; bit_equal_scalar: boolean }> }>;
    /** Destroys the model's GPU device now, as a driver reset would lose it: the running generation and every later call reject with DeviceLost until the model is loaded again (nothing on the CPU backend). */
    loseDevice(): Promise<null>;
  };

  /** Stops the running generation now; it ends with finish_reason "abort". */
  interrupt(): void;
  /** Forgets the cached conversation (the next call prefills its whole prompt). */
  resetChat(): Promise<void>;
  /** Frees the GPU memory and ends the worker; calls afterwards reject with name "Unloaded". */
  unload(): Promise<void>;
}

/** Models stored in the Cache API. */
export function listCached(): Promise<CachedModel[]>;
/** Deletes every cached copy of `url` (as given to load, absolute); resolves to the number removed. */
export function deleteCached(url: string): Promise<number>;
/** True when the browser exposes WebGPU (it may still have no usable adapter). */
export function hasWebGPU(): boolean;

/** What load() makes of a model name: a GGUF URL, or a checkpoint with the key it is cached under. */
export type ModelSource =
  | { kind: 'gguf'; url: string }
  | { kind: 'checkpoint'; base: string; type: ConvertType; key: string; name: string; repo?: string; revision?: string };
export function resolveModelSource(spec: string, options?: { hubUrl?: string; revision?: string; convertType?: ConvertType; baseHref?: string }): ModelSource;
/** "owner/name (q8_0)" for the cache key of a converted checkpoint, else null. */
export function describeCacheKey(key: string): string | null;
export const CONVERT_TYPES: readonly ConvertType[];
export const DEFAULT_CONVERT_TYPE: ConvertType;
