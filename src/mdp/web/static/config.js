// The config page: validate as you type (POST /api/validate, what `mdp validate` says), then start (token).
"use strict";

MDP.token();
MDP.showToken();
const text = document.getElementById("config");
const filename = document.getElementById("filename");
const verdict = document.getElementById("verdict");
const graph = document.getElementById("graph");
const start = document.getElementById("start");
let timer = null;
let asked = 0;

async function check() {
  const mine = ++asked;
  const result = await MDP.api("/api/validate", { method: "POST", body: { config: text.value, filename: filename.value } });
  if (mine !== asked) return; // a newer keystroke's answer wins
  verdict.className = result.ok ? "ok" : "bad";
  verdict.textContent = result.ok ? result.message : "error: " + result.message;
  graph.hidden = !result.ok;
  graph.textContent = result.graph || "";
  start.disabled = !result.ok;
}

function later() {
  clearTimeout(timer);
  timer = setTimeout(check, 300);
}

text.addEventListener("input", later);
filename.addEventListener("input", later);
document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  filename.value = file.name;
  text.value = await file.text();
  check();
});

start.addEventListener("click", async () => {
  const message = document.getElementById("start-message");
  const job = document.getElementById("job").value.trim();
  try {
    const body = { config: text.value, filename: filename.value };
    if (job) body.job = job;
    const record = await MDP.api("/api/jobs", { method: "POST", auth: true, body });
    location.href = "/jobs/" + encodeURIComponent(record.name);
  } catch (e) {
    message.textContent = e.message;
  }
});
