// Must FAIL to type-check: every line marked `// error` is a mistake the declarations catch.
// The test asserts tsc reports an error on exactly the marked lines.
import { MobileLLM, listCached, type LoadOptions } from 'mobilellm-web';

const options: LoadOptions = { forceF32: 'yes' }; // error
const llm = await MobileLLM.load('m.gguf', options);
const res = await llm.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] });
const tokens: number = res.choices[0].message.content; // error
const stream = await llm.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true });
for await (const chunk of stream) console.log(chunk.choices[0].delta.text); // error
const urls: number[] = (await listCached()).map((m) => m.url); // error
llm.info = llm.info; // error
await llm.chat.completions.create({ messages: 'hi' }); // error
console.log(tokens, urls);
