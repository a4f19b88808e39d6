// A small Node.js web service (node:http, no framework): POST /v1/chat/completions answers in OpenAI's shape,
// streamed as server-sent events, from an Ollama API through the official `ollama` client.
// Run: PORT=3000 OLLAMA_HOST=http://127.0.0.1:11434 MODEL=smollm2:135m node sse-server.mjs
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Ollama } from "ollama";
import { explain, setting } from "./common.mjs";

const port = Number(setting("PORT"));
const model = setting("MODEL");
const maxTokensCap = Number(setting("MAX_TOKENS_CAP", "256"));
const ollama = new Ollama({ host: setting("OLLAMA_HOST") });

function sendJson(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function badRequest(res, message, param = null) {
  sendJson(res, 400, { error: { message, type: "invalid_request_error", param, code: null } });
}

async function readJson(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return JSON.parse(text);
}

/** OpenAI's chunk for one piece of the answer (delta), or the last one (finish_reason). */
function chunk(id, delta, finishReason = null) {
  return { id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, delta, finish_reason: finishReason }] };
}

async function chat(req, res) {
  let body;
  try {
    body = await readJson(req);
  } catch {
    return badRequest(res, "The body is not valid JSON.");
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    return badRequest(res, "messages must be a non-empty list of {role, content}.", "messages");
  }
  const maxTokens = body.max_tokens ?? 128;
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > maxTokensCap) {
    return badRequest(res, `max_tokens must be a whole number from 1 to ${maxTokensCap}.`, "max_tokens");
  }
  const options = { temperature: body.temperature ?? 0, seed: 0, num_predict: maxTokens };
  let parts;
  try { // the upstream call starts before any byte is sent: a failure here is still a proper HTTP error
    parts = await ollama.chat({ model, messages: body.messages, options, stream: true });
  } catch (error) {
    return sendJson(res, 502, { error: { message: `upstream: ${explain(error)}`, type: "upstream_error" } });
  }
  const id = `chatcmpl-${randomUUID()}`;
  res.on("close", () => parts.abort()); // the client left: stop generating
  if (!body.stream) {
    let text = "", last = null;
    for await (const part of parts) { text += part.message.content; last = part; }
    return sendJson(res, 200, { id, object: "chat.completion", created: Math.floor(Date.now() / 1000), model,
      choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: last.done_reason }],
      usage: { prompt_tokens: last.prompt_eval_count, completion_tokens: last.eval_count,
        total_tokens: last.prompt_eval_count + last.eval_count } });
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const send = (data) => res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  send(chunk(id, { role: "assistant", content: "" }));
  try {
    for await (const part of parts) {
      if (part.message.content) send(chunk(id, { content: part.message.content }));
      if (part.done) {
        send(chunk(id, {}, part.done_reason === "length" ? "length" : "stop"));
        if (body.stream_options?.include_usage) {
          send({ ...chunk(id, {}), choices: [], usage: { prompt_tokens: part.prompt_eval_count,
            completion_tokens: part.eval_count, total_tokens: part.prompt_eval_count + part.eval_count } });
        }
      }
    }
    send("[DONE]");
  } catch (error) { // the status line (200) is already sent: report the failure as an event
    if (!res.destroyed) send({ error: { message: explain(error), type: "upstream_error" } });
  }
  res.end();
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, "http://localhost").pathname;
  if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { status: "ok" });
  if (req.method === "GET" && path === "/v1/models") {
    return sendJson(res, 200, { object: "list", data: [{ id: model, object: "model", owned_by: "ollama" }] });
  }
  if (req.method === "POST" && path === "/v1/chat/completions") {
    return chat(req, res).catch((error) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: explain(error), type: "server_error" } });
      else res.end();
    });
  }
  sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: "not_found" } });
});
server.listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}, model ${model}`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
