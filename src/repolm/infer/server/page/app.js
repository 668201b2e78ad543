// The page of `repolm serve`: infill, completion and chat against the server's own API, streamed.
// Plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("repolm-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("repolm-api-key", keyInput.value));

function headers() {
  const result = { "Content-Type": "application/json" };
  if (keyInput.value) result["Authorization"] = "Bearer " + keyInput.value;
  return result;
}

// tabs
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === tab);
    for (const panel of document.querySelectorAll(".panel")) {
      panel.classList.toggle("active", panel.id === "panel-" + tab.dataset.panel);
    }
  });
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${response.status}: ${body.error.message}`;
  } catch (ignored) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// POST a JSON body and yield the parsed `data:` events of the server-sent event stream.
async function* streamEvents(path, body, signal) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) throw new Error(await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new Error(event.error.message);
        yield event;
      }
    }
  }
}

function number(id, fallback) {
  const value = Number($(id).value);
  return Number.isFinite(value) ? value : fallback;
}

// Runs one streamed request for a panel: toggles its buttons, shows status, errors and elapsed time.
function runner(prefix, run) {
  let controller = null;
  const runButton = $(prefix + "-run");
  const stopButton = $(prefix === "completion" ? "completion-stop-button" : prefix + "-stop");
  const status = $(prefix + "-status");
  stopButton.addEventListener("click", () => controller && controller.abort());
  runButton.addEventListener("click", async () => {
    controller = new AbortController();
    runButton.disabled = true;
    stopButton.disabled = false;
    status.className = "status";
    status.textContent = "generating…";
    const started = performance.now();
    try {
      const summary = await run(controller.signal);
      status.textContent = `done in ${((performance.now() - started) / 1000).toFixed(2)} s${summary ? " · " + summary : ""}`;
    } catch (error) {
      status.className = "status error";
      status.textContent = error.name === "AbortError" ? "stopped" : String(error.message || error);
    } finally {
      runButton.disabled = false;
      stopButton.disabled = true;
      controller = null;
    }
  });
}

function showContext(report) {
  const box = $("infill-context");
  box.replaceChildren();
  $("infill-context-count").textContent = `(${report.context.length} snippet${report.context.length === 1 ? "" : "s"})`;
  if (!report.context.length) {
    const none = document.createElement("p");
    none.className = "muted";
    none.textContent = "no cross-file context in this prompt";
    box.append(none);
  }
  for (const snippet of report.context) {
    const item = document.createElement("div");
    item.className = "snippet";
    const title = document.createElement("div");
    title.className = "snippet-title";
    const score = snippet.score ? ` · score ${snippet.score.toFixed(2)}` : "";
    title.textContent = `${snippet.path}:${snippet.start_line} · ${snippet.source}${score}`;
    const code = document.createElement("pre");
    code.textContent = snippet.text;
    item.append(title, code);
    box.append(item);
  }
  $("infill-prompt").textContent = report.prompt;
  const cut = Object.entries(report.cut).filter(([, count]) => count > 0).map(([part, count]) => `${part} −${count}`);
  $("infill-prompt-tokens").textContent = `(${report.prompt_tokens} tokens${cut.length ? ", cut: " + cut.join(", ") : ""})`;
}

runner("infill", async (signal) => {
  const output = $("infill-output");
  output.textContent = "";
  const path = $("infill-path").value.trim();
  const body = {
    input_prefix: $("infill-prefix").value,
    input_suffix: $("infill-suffix").value,
    n_predict: number("infill-max-tokens", 64),
    temperature: number("infill-temperature", 0),
    stream: true,
    repolm: { path: path || null, return_prompt: true },
  };
  const extraText = $("infill-extra-text").value;
  if (extraText.trim()) body.input_extra = [{ filename: $("infill-extra-path").value.trim(), text: extraText }];
  let last = null;
  for await (const event of streamEvents("/infill", body, signal)) {
    if (event.repolm) showContext(event.repolm);
    if (event.content) output.textContent += event.content;
    if (event.stop) last = event;
  }
  return last ? `${last.tokens_predicted} tokens, stop: ${last.stop_type}` : "";
});

runner("completion", async (signal) => {
  const output = $("completion-output");
  output.textContent = "";
  const stop = $("completion-stop").value.replaceAll("\\n", "\n").replaceAll("\\t", "\t");
  const body = {
    prompt: $("completion-prompt").value,
    max_tokens: number("completion-max-tokens", 64),
    temperature: number("completion-temperature", 0),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (stop) body.stop = [stop];
  let usage = null;
  for await (const event of streamEvents("/v1/completions", body, signal)) {
    for (const choice of event.choices) output.textContent += choice.text;
    if (event.usage) usage = event.usage;
  }
  return usage ? `${usage.completion_tokens} tokens` : "";
});

const conversation = [];

function addMessage(role, text) {
  const item = document.createElement("div");
  item.className = "message " + role;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role;
  const content = document.createElement("pre");
  content.textContent = text;
  item.append(who, content);
  $("chat-log").append(item);
  return content;
}

runner("chat", async (signal) => {
  const text = $("chat-input").value.trim();
  if (!text) throw new Error("write a message first");
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  $("chat-input").value = "";
  const answer = addMessage("assistant", "");
  const body = {
    messages: conversation,
    max_tokens: number("chat-max-tokens", 256),
    temperature: number("chat-temperature", 0),
    stream: true,
  };
  try {
    for await (const event of streamEvents("/v1/chat/completions", body, signal)) {
      for (const choice of event.choices) if (choice.delta.content) answer.textContent += choice.delta.content;
    }
  } finally {
    conversation.push({ role: "assistant", content: answer.textContent });
  }
  return "";
});

$("chat-clear").addEventListener("click", () => {
  conversation.length = 0;
  $("chat-log").replaceChildren();
});

async function showModel() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) throw new Error(await errorMessage(response));
    const models = await response.json();
    $("model-name").textContent = "model " + models.data.map((model) => model.id).join(", ");
  } catch (error) {
    $("model-name").textContent = String(error.message || error);
  }
}
keyInput.addEventListener("change", showModel);
showModel();
