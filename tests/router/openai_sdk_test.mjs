// The official OpenAI SDK (npm `openai`) against a running router: chat and completions,
// streaming and not, greedy streamed text equal to non-streamed text, usage counts, error
// objects. Run by router_process_test; exits non-zero on the first failed check.
//
//   node tests/router/openai_sdk_test.mjs http://127.0.0.1:8000/v1 MODEL API_KEY
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [baseURL, model, apiKey] = process.argv.slice(2);
if (!baseURL || !model) {
  console.error('usage: openai_sdk_test.mjs BASE_URL MODEL [API_KEY]');
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: apiKey || 'unused', maxRetries: 0, timeout: 60000 });

async function check(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (error) {
    console.error(`FAIL ${name}: ${error?.stack || error}`);
    process.exitCode = 1;
  }
}

async function collect(stream) {
  const texts = new Map();
  const finish = new Map();
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      const piece = choice.delta ? (choice.delta.content ?? '') : (choice.text ?? '');
      texts.set(choice.index, (texts.get(choice.index) ?? '') + piece);
      if (choice.finish_reason) finish.set(choice.index, choice.finish_reason);
    }
  }
  return { texts, finish, usage, chunks };
}

await check('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === model), JSON.stringify(models.data));
});

const prompt = 'The quick brown fox jumps over the lazy dog. Once upon a time';
await check('completions: streamed text equals non-streamed text (greedy), usage counts', async () => {
  const plain = await client.completions.create({
    model, prompt, max_tokens: 24, temperature: 0,
  });
  assert.equal(plain.object, 'text_completion');
  assert.equal(plain.choices.length, 1);
  const choice = plain.choices[0];
  assert.ok(['stop', 'length'].includes(choice.finish_reason));
  assert.ok(plain.usage.prompt_tokens > 0);
  assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 24);
  if (choice.finish_reason === 'length') assert.equal(plain.usage.completion_tokens, 24);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

  const streamed = await collect(await client.completions.create({
    model, prompt, max_tokens: 24, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  }));
  assert.equal(streamed.texts.get(0), choice.text);
  assert.equal(streamed.finish.get(0), choice.finish_reason);
  assert.deepEqual(
    { p: streamed.usage.prompt_tokens, c: streamed.usage.completion_tokens },
    { p: plain.usage.prompt_tokens, c: plain.usage.completion_tokens });
});

await check('chat: streamed text equals non-streamed text (greedy), usage counts', async () => {
  const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Name three colours.' },
  ];
  const plain = await client.chat.completions.create({
    model, messages, max_completion_tokens: 20, temperature: 0, seed: 1,
  });
  assert.equal(plain.object, 'chat.completion');
  const message = plain.choices[0].message;
  assert.equal(message.role, 'assistant');
  assert.ok(typeof message.content === 'string');
  assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 20);

  const streamed = await collect(await client.chat.completions.create({
    model, messages, max_completion_tokens: 20, temperature: 0, seed: 1, stream: true,
    stream_options: { include_usage: true },
  }));
  assert.equal(streamed.texts.get(0), message.content);
  assert.equal(streamed.finish.get(0), plain.choices[0].finish_reason);
  assert.equal(streamed.usage.completion_tokens, plain.usage.completion_tokens);
  assert.equal(streamed.usage.prompt_tokens, plain.usage.prompt_tokens);
});

await check('n choices and logprobs', async () => {
  const plain = await client.completions.create({
    model, prompt, max_tokens: 6, temperature: 0, n: 2, logprobs: 2,
  });
  assert.equal(plain.choices.length, 2);
  assert.equal(plain.choices[0].text, plain.choices[1].text);  // greedy: the same answer
  const lp = plain.choices[0].logprobs;
  assert.equal(lp.tokens.length, lp.token_logprobs.length);
  assert.ok(lp.tokens.length > 0);
  const chat = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0,
    logprobs: true, top_logprobs: 2,
  });
  assert.ok(chat.choices[0].logprobs.content.length > 0);
  assert.ok(chat.choices[0].logprobs.content[0].top_logprobs.length <= 2);
});

await check('errors arrive as OpenAI error objects', async () => {
  await assert.rejects(
    client.completions.create({ model, prompt, max_tokens: 0 }),
    (error) => error instanceof OpenAI.BadRequestError && error.status === 400 &&
      error.param === 'max_tokens');
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (error) => error instanceof OpenAI.NotFoundError && error.status === 404);
  const anonymous = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  if (apiKey) {
    await assert.rejects(anonymous.models.list(),
      (error) => error instanceof OpenAI.AuthenticationError && error.status === 401);
  }
});
