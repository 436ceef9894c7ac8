// Type-checked (tsc --noEmit, strict) against the installed package's index.d.ts; never run.
// It touches every export and every documented field, and each @ts-expect-error below is a misuse
// the declarations must reject: an unused @ts-expect-error is itself an error, so declarations
// that were too loose (any, missing overloads) fail this check too.
import {
  MobileLLM, MobileLLMError, listCached, deleteCached, hasWebGPU,
  resolveModelSource, describeCacheKey, CONVERT_TYPES, DEFAULT_CONVERT_TYPE,
  type ConvertType, type ModelSource, type ConversionStats, type DecodeProfile,
  type TextCompletion, type TextCompletionStream, type MobileLLMErrorName, type LoadOptions, type LoadProgress, type ModelInfo, type LoadStats,
  type ChatMessage, type ChatCompletionRequest, type ChatCompletion, type ChatCompletionChunk,
  type ChatCompletionStream, type ChatCompletionStreamResult, type CompletionUsage,
  type CompletionTimings, type CompletionDebug, type FinishReason, type CachedModel,
} from 'mobilellm-web';

export async function everything(url: string): Promise<string> {
  if (!hasWebGPU()) throw new MobileLLMError('WebGPUUnavailable', 'no WebGPU here');
  const ctl = new AbortController();
  const options: LoadOptions = {
    onProgress: (p: LoadProgress) => {
      const fraction: number = p.total ? (p.loaded ?? 0) / p.total : 0;
      console.log(p.phase, fraction, p.rate, p.fromCache);
    },
    signal: ctl.signal,
    forceF32: true,
    contextLength: 1024,
    useCache: false,
    workerUrl: new URL('/static/mobilellm/worker.js', location.href),
    wasmUrl: 'https://cdn.example.com/mobilellm_web_bg.wasm',
  };
  const llm: MobileLLM = await MobileLLM.load(url, options);
  const info: ModelInfo = llm.info;
  const summary = `${info.arch} ${info.n_layers}x${info.dim} ctx ${info.n_ctx}/${info.context_length} on ${info.adapter}` +
    ` ${info.f16 ? 'f16' : 'f32'} ${info.gpu_bytes + info.file_bytes} ${info.has_chat_template} ${info.url}`;
  const stats: LoadStats = llm.loadStats;
  const conv: ConversionStats | null = stats.conversion;
  if (conv) console.log(conv.report.summary, conv.report.n_params, conv.download_bytes, conv.scratch, conv.timings.convert_ms, conv.wasm_memory_bytes);
  console.log(summary, stats.fromCache, stats.timings.download_ms + stats.timings.read_ms + stats.timings.compile_ms, stats.timings.total_ms);

  const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }];
  const stream: ChatCompletionStream = await llm.chat.completions.create({
    messages, stream: true, temperature: 0.7, top_p: 0.9, top_k: 40, min_p: 0.05, repetition_penalty: 1.1,
    max_tokens: 64, seed: 42, stop: ['\n\n', 'User:'], signal: ctl.signal,
  });
  let text = '';
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0].delta.content ?? '';
    const finish: FinishReason | null = c.choices[0].finish_reason;
    if (finish !== null && c.usage && c.timings) console.log(finish, c.usage.completion_tokens, c.timings.ttft_ms);
  }
  const result: ChatCompletionStreamResult = await stream.finished;
  const t: CompletionTimings = result.timings;
  console.log(result.finish_reason, t.prefill_tokens_per_s?.toFixed(1), t.decode_tokens_per_s?.toFixed(1), t.prefill_ms, t.decode_ms);

  // The whole history each call; the common prefix's KV cache is reused.
  const res: ChatCompletion = await llm.chat.completions.create({
    messages: [...messages, { role: 'assistant', content: text }, { role: 'user', content: 'And?' }], stop: 'x', ignore_eos: false,
  });
  const u: CompletionUsage = res.usage;
  const d: CompletionDebug = res.debug;
  console.log(res.id, res.object, res.created, res.model, res.choices[0].index, res.choices[0].finish_reason, u.prompt_tokens,
    u.prefill_tokens, u.total_tokens, d.prompt_token_ids?.length, d.completion_token_ids.length, d.cached_tokens, d.n_ctx,
    d.dispatches_per_step, d.readback_bytes_per_step, res.timings.ttft_ms);

  // A request whose `stream` is only known at run time gets the union.
  const req: ChatCompletionRequest = { messages, stream: Math.random() < 0.5 };
  const either = await llm.chat.completions.create(req);
  if ('choices' in either) console.log(either.choices[0].message.content);
  else await either.return();

  const early = await llm.chat.completions.create({ messages, stream: true });
  for await (const chunk of early) { if (chunk.choices[0].delta.content) break; } // stops the generation

  const profile: DecodeProfile = await llm.debug.profileDecode(messages, 2);
  console.log(profile.kv_len, profile.step_ms, profile.round_trip_ms, profile.ops.map((o) => `${o.op} ${o.per_step} ${o.ms_per_step}`));

  const rows = await llm.debug.topLogits(new Uint32Array([1, 2, 3]), 2);
  const [id, logit]: [number, number] = rows[0][0];
  const prompt: { text: string; ids: number[] } = await llm.debug.promptTokens(messages);
  console.log(id, logit, prompt.text, prompt.ids);

  llm.interrupt();
  await llm.resetChat();
  await llm.unload();

  const cached: CachedModel[] = await listCached();
  for (const m of cached) console.log(m.url, m.size.toFixed(0), m.cachedAt ?? 'unknown');
  const removed: number = await deleteCached(info.url);
  return `${res.choices[0].message.content} (${removed})`;
}

/** A Hugging Face base model: converted in the browser, then raw-text completion. */
export async function baseModel(token: string): Promise<string> {
  const type: ConvertType = CONVERT_TYPES.includes('q4_1') ? 'q4_1' : DEFAULT_CONVERT_TYPE;
  const source: ModelSource = resolveModelSource('hf:facebook/MobileLLM-125M@main', { convertType: type, baseHref: location.href });
  const key = source.kind === 'checkpoint' ? source.key : source.url;
  console.log(describeCacheKey(key) ?? 'a GGUF URL');
  const llm = await MobileLLM.load('facebook/MobileLLM-125M', {
    hfToken: token, hubUrl: 'https://huggingface.co', revision: 'main', convertType: type,
    onProgress: (p) => console.log(p.phase, p.file ?? '', p.bytes ?? 0),
  });
  const one: TextCompletion = await llm.completions.create({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0 });
  let text = one.choices[0].text;
  const stream: TextCompletionStream = await llm.completions.create({ prompt: text, stream: true, stop: '.' });
  for await (const chunk of stream) text += chunk.choices[0].text;
  console.log((await stream.finished).usage.completion_tokens);
  const raw = await llm.chat.completions.create({ messages: [{ role: 'user', content: 'Once upon' }], raw: true });
  await llm.unload();
  return text + raw.choices[0].message.content;
}

export function describe(e: unknown): string {
  if (!(e instanceof MobileLLMError)) return String(e);
  const name: MobileLLMErrorName = e.name;
  switch (name) {
    case 'DownloadFailed': case 'InvalidModelFile': case 'UnsupportedModel': return `model: ${e.message}`;
    case 'GatedModel': return `needs a Hugging Face token: ${e.message}`;
    case 'WebGPUUnavailable': case 'GPUError': return `gpu: ${e.message}`;
    case 'ContextFull': case 'Aborted': case 'Unloaded': case 'InvalidArgument': return e.message;
    default: return `${name}: ${e.message}`;
  }
}

export async function misuses(llm: MobileLLM, messages: ChatMessage[]) {
  // @ts-expect-error: a misspelt option (wasmURL) is not silently ignored
  await MobileLLM.load('m.gguf', { wasmURL: 'x.wasm' });
  // @ts-expect-error: contextLength is a number
  await MobileLLM.load('m.gguf', { contextLength: '4k' });
  // @ts-expect-error: temperature is a number
  await llm.chat.completions.create({ messages, temperature: '0' });
  // @ts-expect-error: a message needs content
  await llm.chat.completions.create({ messages: [{ role: 'user' }] });
  // @ts-expect-error: stream: true gives a stream, not a ChatCompletion
  const notACompletion: ChatCompletion = await llm.chat.completions.create({ messages, stream: true });
  // @ts-expect-error: without stream: true there is nothing to iterate
  for await (const c of await llm.chat.completions.create({ messages })) console.log(c);
  // @ts-expect-error: error names are a closed set
  const bogus: MobileLLMErrorName = 'NotAnError';
  // @ts-expect-error: the constructor is private; use MobileLLM.load
  new MobileLLM();
  // @ts-expect-error: finish reasons are a closed set
  const finish: FinishReason = 'context_full';
  // @ts-expect-error: not a conversion type
  await MobileLLM.load('facebook/MobileLLM-125M', { convertType: 'q5_k' });
  // @ts-expect-error: text completion takes a prompt, not messages
  await llm.completions.create({ messages });
  // @ts-expect-error: deleteCached takes the model URL string
  await deleteCached(42);
  console.log(notACompletion, bogus, finish);
}
