// What both test pages run, given the package's module namespace `api`: load a model, stream one
// greedy reply, unload; everything the test asserts on comes back as plain data.

export async function runChat(api, { model, prompt, maxTokens, ...loadOptions }) {
  const phases = [];
  const t0 = performance.now();
  const llm = await api.MobileLLM.load(model, {
    ...loadOptions,
    onProgress: (p) => { if (phases.at(-1) !== p.phase) phases.push(p.phase); },
  });
  const loadMs = performance.now() - t0;
  try {
    const t1 = performance.now();
    const stream = await llm.chat.completions.create({
      messages: [{ role: 'user', content: prompt }], stream: true, temperature: 0, max_tokens: maxTokens,
    });
    let text = '';
    let deltas = 0;
    let firstRole = null;
    let last = null;
    for await (const chunk of stream) {
      const delta = chunk.choices[0].delta;
      firstRole ??= delta.role ?? null;
      if (delta.content) { text += delta.content; deltas++; }
      last = chunk;
    }
    return {
      text, deltas, firstRole,
      finishReason: last.choices[0].finish_reason,
      usage: last.usage,
      ids: last.debug.completion_token_ids,
      promptIds: last.debug.prompt_token_ids,
      phases, loadMs, genMs: performance.now() - t1,
      info: llm.info,
    };
  } finally {
    await llm.unload();
  }
}

/** Load that is expected to fail: its typed error as data. */
export async function tryLoad(api, url, opts = {}) {
  try {
    const llm = await api.MobileLLM.load(url, opts);
    await llm.unload();
    return { ok: true };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message, typed: e instanceof api.MobileLLMError };
  }
}
