// The chat page of slmlab.serve.app: sends the conversation to /v1/chat/completions with "stream": true and
// shows the answer as it arrives (fetch + ReadableStream, server-sent events "data: {...}" until "data: [DONE]").
// Model text is inserted with textContent, never as HTML. An API key, when the server asks for one, stays in
// this page's memory only.
"use strict";

const history = [];
let model = null;

const $ = (id) => document.getElementById(id);

function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  div.textContent = text;
  $("log").appendChild(div);
  return div;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message || JSON.stringify(body);
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function loadModel() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-row").hidden = false;
    $("model").textContent = "enter the API key below";
    return;
  }
  if (!response.ok) {
    $("model").textContent = await errorText(response);
    return;
  }
  model = (await response.json()).data[0].id;
  $("model").textContent = model;
}

// Parse server-sent events from a byte stream; calls onData(payload) for each "data:" line.
async function readEvents(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) onData(line.slice(6));
      }
    }
  }
}

async function ask(question) {
  history.push({ role: "user", content: question });
  addTurn("user", question);
  const answer = addTurn("assistant", "");
  answer.classList.add("streaming");
  answer.dataset.chunks = "0";
  answer.dataset.state = "streaming";
  $("send").disabled = true;
  $("status").textContent = "generating…";
  let text = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ model, messages: history, stream: true }),
    });
    if (response.status === 401) $("key-row").hidden = false;
    if (!response.ok) throw new Error(await errorText(response));
    let finish = null;
    await readEvents(response.body, (data) => {
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message);
      const choice = event.choices[0];
      if (choice?.delta?.content) {
        text += choice.delta.content;
        answer.textContent = text;
        answer.dataset.chunks = String(Number(answer.dataset.chunks) + 1);
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
    });
    history.push({ role: "assistant", content: text });
    answer.dataset.state = "done";
    $("status").textContent = finish === "length" ? "stopped: the answer reached max_tokens" : "";
  } catch (err) {
    history.pop();
    answer.classList.add("error");
    answer.textContent = text + (text ? "\n" : "") + `Error: ${err.message}`;
    answer.dataset.state = "error";
    $("status").textContent = "";
  } finally {
    answer.classList.remove("streaming");
    $("send").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadModel();
  $("api-key").addEventListener("change", loadModel);
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
});
