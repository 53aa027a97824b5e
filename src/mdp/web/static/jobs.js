// The jobs table: the newest run of every job, refreshed every second from GET /api/jobs.
"use strict";

MDP.token();
MDP.showToken();

function seconds(job) {
  const end = job.ended_ns || job.heartbeat_ns;
  return (end - job.started_ns) / 1e9;
}

async function refresh() {
  let data;
  try {
    data = await MDP.api("/api/jobs");
  } catch (e) {
    return;
  }
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren(
    ...data.jobs.map((job) => {
      const c = job.counters || {};
      return MDP.el(
        "tr",
        { "data-job": job.name },
        MDP.el("td", {}, MDP.el("a", { href: "/jobs/" + encodeURIComponent(job.name) }, job.name)),
        MDP.el("td", {}, MDP.el("span", { class: "state " + job.state }, job.state)),
        MDP.el("td", {}, job.pid),
        MDP.el("td", {}, (job.started_at || "").slice(0, 19).replace("T", " ")),
        MDP.el("td", { class: "n" }, MDP.num(c.rows_in)),
        MDP.el("td", { class: "n" }, MDP.num(c.rows_per_second)),
        MDP.el("td", { class: "n" }, MDP.num(c.bars_out)),
        MDP.el("td", { class: "n" }, MDP.num(c.late_rows)),
        MDP.el("td", { class: "n" }, MDP.num(seconds(job), 1)),
        MDP.el("td", { class: "dim" }, job.config_path || ""),
      );
    }),
  );
  document.getElementById("empty").hidden = data.jobs.length > 0;
}

refresh();
setInterval(refresh, 1000);
