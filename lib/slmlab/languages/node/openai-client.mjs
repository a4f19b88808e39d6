// The official `openai` npm client against an OpenAI-compatible server with an API key (the course's gateway),
// and against the Ollama API's /v1 for embeddings.
// Run: OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=... EMBED_BASE_URL=http://127.0.0.1:11434/v1 \
//      EMBED_MODEL=all-minilm node openai-client.mjs
import OpenAI from "openai";
import { main, setting } from "./common.mjs";

const maxTokens = Number(setting("MAX_TOKENS", "32"));
const question = setting("QUESTION", "What is the capital of France? Answer in one sentence.");

await main(async () => {
  // The client reads OPENAI_BASE_URL and OPENAI_API_KEY from the environment; maxRetries: 0 shows errors as they are.
  const client = new OpenAI({ maxRetries: 0 });
  const models = (await client.models.list()).data.map((m) => m.id);
  const model = models[0];
  console.log(`models at ${client.baseURL}: ${models.join(", ")}`);

  const messages = [{ role: "user", content: question }];
  const completion = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0 });
  const answer = completion.choices[0].message.content;
  console.log(`\nchat: ${answer}`);
  console.log(`  usage ${JSON.stringify(completion.usage)}, finish_reason=${completion.choices[0].finish_reason}`);

  process.stdout.write("\nstream: ");
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  const pieces = [];
  let usage = null;
  for await (const chunk of stream) {
    const piece = chunk.choices[0]?.delta?.content;
    if (piece) {
      pieces.push(piece);
      process.stdout.write(piece);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  console.log(`\n  ${pieces.length} pieces, ${usage?.completion_tokens} tokens; ` +
    `the same text as the whole answer: ${pieces.join("") === answer}`);

  // Embeddings: the gateway serves chat only; the Ollama API's OpenAI-compatible /v1 has /v1/embeddings.
  const ollamaV1 = new OpenAI({ baseURL: setting("EMBED_BASE_URL"), apiKey: "ollama", maxRetries: 0 });
  // encoding_format "float": the client asks for base64 by default, which slmlab's server does not send.
  const embedded = await ollamaV1.embeddings.create({
    model: setting("EMBED_MODEL"), input: ["small models", "SLMs"], encoding_format: "float",
  });
  console.log(`\nembeddings: ${embedded.data.length} vectors of ${embedded.data[0].embedding.length} numbers`);

  // Errors: one class per status, with the server's error body.
  const errors = {};
  const wrongKey = new OpenAI({ apiKey: "sk-wrong-key-0123456789", maxRetries: 0 });
  for (const [what, call] of [
    ["wrong API key", () => wrongKey.chat.completions.create({ model, messages, max_tokens: 4 })],
    ["max_tokens over the cap", () => client.chat.completions.create({ model, messages, max_tokens: 100000 })],
  ]) {
    try {
      await call();
    } catch (err) {
      errors[what] = { name: err.constructor.name, status: err.status, message: err.error?.message ?? err.message };
      console.log(`\n${what}: ${err.constructor.name} (status ${err.status}): ${errors[what].message}`);
    }
  }
  return { models, answer, pieces, usage, dims: embedded.data[0].embedding.length, errors };
});
