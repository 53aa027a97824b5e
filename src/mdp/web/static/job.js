// The job page: status, the DAG and the candles, live over WS /ws/jobs/{job}; Stop with the token.
"use strict";

const job = decodeURIComponent(location.pathname.split("/").pop());
const token = MDP.token();
MDP.showToken();
document.getElementById("job-name").textContent = job;
document.title = "mdp dashboard: " + job;
const chart = document.getElementById("chart");
const select = document.getElementById("symbol");
let socket = null;

function figure(label, value) {
  return MDP.el("div", { class: "figure" }, MDP.el("b", {}, value), MDP.el("span", {}, label));
}

function showStatus(record) {
  const state = document.getElementById("job-state");
  state.textContent = record.state;
  state.className = "state " + record.state;
  document.getElementById("stop").disabled = !(record.state === "running" || record.state === "stopping");
  const c = record.counters || {};
  document.getElementById("figures").replaceChildren(
    figure("rows in", MDP.num(c.rows_in)),
    figure("rows/s", MDP.num(c.rows_per_second)),
    figure("bars out", MDP.num(c.bars_out)),
    figure("late rows", MDP.num(c.late_rows)),
    figure("dead letters", MDP.num(c.bad_records)),
    figure("rows written", MDP.num(c.rows_written)),
    figure("seconds", MDP.num(c.seconds, 1)),
    figure("backpressure", c.backpressure ? "on" : "off"),
  );
  if (c.graph) DAG.draw(document.getElementById("dag"), c.graph);
  if (record.error) document.getElementById("error").textContent = record.error;
}

function addSymbols(symbols) {
  const known = new Set([...select.options].map((o) => o.value));
  const fresh = [...symbols].filter((s) => !known.has(s)).sort();
  for (const s of fresh) select.append(MDP.el("option", { value: s }, s));
  if (!Candles.symbol && select.options.length) {
    select.value = select.options[0].value;
    chooseSymbol(select.value);
  }
}

async function chooseSymbol(symbol) {
  Candles.symbol = symbol;
  try {
    const data = await MDP.api(`/api/jobs/${encodeURIComponent(job)}/bars?symbol=${encodeURIComponent(symbol)}`);
    Candles.add(data.bars.slice(-Candles.KEEP));
  } catch (e) {
    /* no store yet: the live feed fills the chart */
  }
  Candles.schedule(chart);
}

function onBars(bars) {
  const touched = Candles.add(bars);
  addSymbols(touched);
  if (touched.has(Candles.symbol)) Candles.schedule(chart);
  document.getElementById("bar-count").textContent = `${Candles.series(Candles.symbol).length} bars`;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${encodeURIComponent(job)}?token=${encodeURIComponent(token)}`);
  const live = document.getElementById("live");
  socket.onopen = () => (live.textContent = "live");
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "status") showStatus(message.job);
    else if (message.type === "bars") onBars(message.bars);
  };
  socket.onclose = (event) => {
    live.textContent = event.code === 4401 ? "not live: the token is missing or wrong" : "reconnecting…";
    if (event.code !== 4401 && event.code !== 4404) setTimeout(connect, 1000);
  };
}

select.addEventListener("change", () => chooseSymbol(select.value));

document.getElementById("stop").addEventListener("click", async () => {
  const message = document.getElementById("stop-message");
  try {
    const result = await MDP.api(`/api/jobs/${encodeURIComponent(job)}/stop`, { method: "POST", auth: true });
    message.textContent = `asked pid ${result.pid} to stop; it drains and flushes`;
  } catch (e) {
    message.textContent = e.message;
  }
});

(async () => {
  try {
    showStatus(await MDP.api(`/api/jobs/${encodeURIComponent(job)}`));
  } catch (e) {
    document.getElementById("error").textContent = e.message;
    return;
  }
  connect(); // its first message holds the newest bars of every symbol: they fill the symbol list
})();
