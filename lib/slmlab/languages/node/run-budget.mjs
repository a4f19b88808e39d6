// Runs the exercise's chatWithBudget (budget.mjs, written by the learner) next to a plain stream of the same
// question, and prints both as the JSON result line.
// Run: OLLAMA_HOST=... MODEL=smollm2:135m BUDGET=5 node run-budget.mjs
import { Ollama } from "ollama";
import { main, setting } from "./common.mjs";
import { chatWithBudget } from "./budget.mjs";

const model = setting("MODEL");
const budget = Number(setting("BUDGET"));
const messages = [{ role: "user", content: setting("QUESTION", "Write two sentences about a robot who paints.") }];

await main(async () => {
  const ollama = new Ollama({ host: setting("OLLAMA_HOST") });
  const reference = [];
  const options = { temperature: 0, seed: 0, num_predict: budget + 8 };
  for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
    if (part.message.content) reference.push(part.message.content);
  }
  const result = await chatWithBudget(ollama, model, messages, budget);
  console.log(`budget ${budget}: ${JSON.stringify(result?.text)}`);
  return { budget, result, reference };
});
