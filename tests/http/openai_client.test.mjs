// The official openai client (npm) against a running Tessera HTTP API; the base URL
// comes from TESSERA_HTTP_URL (tests/http/openai_client.sh starts the server).
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI, { APIError } from "openai";

const client = new OpenAI({ baseURL: process.env.TESSERA_HTTP_URL, apiKey: "unused", maxRetries: 0 });
const model = "tessera-tiny-llama";

test("lists the served model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
});

test("a completion and its stream carry the same text, and a seed repeats", async () => {
  const request = { model, prompt: "The LORD is", max_tokens: 16, seed: 3 };
  const whole = await client.completions.create(request);
  assert.equal(whole.choices.length, 1);
  assert.equal(whole.usage.completion_tokens, 16);
  const again = await client.completions.create(request);
  assert.equal(again.choices[0].text, whole.choices[0].text);
  let text = "";
  let usage = null;
  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    for (const choice of chunk.choices) text += choice.text;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(usage.completion_tokens, 16);
});

test("n = 2 with logprobs, stop, and cached tokens on a repeated prompt", async () => {
  const two = await client.completions.create({ model, prompt: "In the beginning", n: 2, max_tokens: 4, logprobs: 2, seed: 1 });
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
  for (const c of two.choices) assert.equal(c.logprobs.tokens.join(""), c.text);
  const stopped = await client.completions.create({ model, prompt: "And God said", stop: [","], max_tokens: 64, temperature: 0 });
  assert.equal(stopped.choices[0].finish_reason, "stop");
  assert.ok(!stopped.choices[0].text.includes(","));
  const prompt = Array.from({ length: 40 }, (_, i) => 200 + i);
  await client.completions.create({ model, prompt, max_tokens: 1 });
  const cached = await client.completions.create({ model, prompt, max_tokens: 1 });
  assert.equal(cached.usage.prompt_tokens_details.cached_tokens, 32);
});

test("chat: the bundled model's template, the role in the first delta, the same text streamed", async () => {
  const request = { model, messages: [{ role: "user", content: "And God said" }], max_tokens: 12, seed: 2 };
  const whole = await client.chat.completions.create(request);
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.choices[0].message.role, "assistant");
  assert.equal(whole.usage.completion_tokens, 12);
  let text = "";
  let role = null;
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    const delta = chunk.choices[0]?.delta;
    role ??= delta?.role;
    text += delta?.content ?? "";
  }
  assert.equal(role, "assistant");
  assert.equal(text, whole.choices[0].message.content);
});

test("errors come back as the client's APIError with status and param", async () => {
  await assert.rejects(client.completions.create({ model, prompt: "x", top_p: 5 }), (e) => {
    assert.ok(e instanceof APIError);
    assert.equal(e.status, 400);
    assert.equal(e.param, "top_p");
    return true;
  });
  await assert.rejects(client.completions.create({ model: "gpt-4", prompt: "x" }), (e) => e.status === 404);
});

test("embeddings: one input and a batch, unit vectors, the same with float and base64 encodings", async () => {
  // The client asks for base64 unless told otherwise, and decodes it to floats.
  const batch = await client.embeddings.create({ model, input: ["In the beginning", "And God said"] });
  assert.equal(batch.object, "list");
  assert.deepEqual(batch.data.map((d) => d.index), [0, 1]);
  for (const d of batch.data) {
    assert.equal(d.embedding.length, 256);
    assert.ok(Math.abs(Math.hypot(...d.embedding) - 1) < 1e-5);
  }
  assert.equal(batch.usage.prompt_tokens, batch.usage.total_tokens);
  // Alone, so that both run in the same batch shape (the server is not batch-invariant).
  const request = { model, input: "In the beginning" };
  const floats = await client.embeddings.create({ ...request, encoding_format: "float" });
  const decoded = await client.embeddings.create(request);
  assert.deepEqual(decoded.data[0].embedding, floats.data[0].embedding);
  await assert.rejects(client.embeddings.create({ model, input: [] }), (e) => e.status === 400 && e.param === "input");
});
