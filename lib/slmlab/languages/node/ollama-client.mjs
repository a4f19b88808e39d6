// The official `ollama` npm client against an Ollama API (the real Ollama, or `slmlab serve ollama`).
// Run: OLLAMA_HOST=http://127.0.0.1:11434 MODEL=smollm2:135m EMBED_MODEL=all-minilm node ollama-client.mjs
import { Ollama } from "ollama";
import { main, setting } from "./common.mjs";

const host = setting("OLLAMA_HOST");
const model = setting("MODEL");
const embedModel = setting("EMBED_MODEL");
const maxTokens = Number(setting("MAX_TOKENS", "32"));
const question = setting("QUESTION", "What is the capital of France? Answer in one sentence.");

await main(async () => {
  const ollama = new Ollama({ host });
  const { version } = await ollama.version();
  const { models } = await ollama.list();
  console.log(`Ollama API ${version} at ${host}; models: ${models.map((m) => m.name).join(", ")}`);

  // 1. one whole answer: temperature 0 is greedy, num_predict the token budget
  const options = { temperature: 0, seed: 0, num_predict: maxTokens };
  const messages = [{ role: "user", content: question }];
  const whole = await ollama.chat({ model, messages, options });
  console.log(`\nchat: ${whole.message.content}`);
  console.log(`  ${whole.eval_count} tokens in ${(whole.eval_duration / 1e9).toFixed(3)} s, ` +
    `done_reason=${whole.done_reason}`);

  // 2. the same question streamed: an async iterator of parts, the last one with done: true and the counts
  process.stdout.write("\nstream: ");
  const pieces = [];
  for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
    if (part.message.content) {
      pieces.push(part.message.content);
      process.stdout.write(part.message.content);
    }
  }
  console.log(`\n  ${pieces.length} pieces; the same text as the whole answer: ${pieces.join("") === whole.message.content}`);

  // 3. embeddings: one unit-length vector per input
  const texts = ["The cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell sharply."];
  const { embeddings } = await ollama.embed({ model: embedModel, input: texts });
  const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0);
  console.log(`\nembed: ${embeddings.length} vectors of ${embeddings[0].length} numbers`);
  console.log(`  cat~kitten ${cosine(embeddings[0], embeddings[1]).toFixed(3)}, ` +
    `cat~stocks ${cosine(embeddings[0], embeddings[2]).toFixed(3)}`);

  // 4. errors: the client throws a ResponseError with the server's message and status
  let error = null;
  try {
    await ollama.chat({ model: "no-such-model:1b", messages });
  } catch (err) {
    error = { name: err.name, status: err.status_code, message: err.error ?? err.message };
    console.log(`\nerror: ${err.name} ${err.status_code}: ${error.message}`);
  }
  return {
    version, models: models.map((m) => m.name), answer: whole.message.content, eval_count: whole.eval_count,
    pieces, dims: embeddings[0].length, similar: cosine(embeddings[0], embeddings[1]),
    unrelated: cosine(embeddings[0], embeddings[2]), error,
  };
});
