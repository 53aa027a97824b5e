// Draw a job's DAG as SVG: nodes in columns by their longest path from a source, one channel per edge
// with its depth against capacity. Our own code (a DAG of a few nodes needs no layout library).
"use strict";

const DAG = {
  W: 230, H: 112, GAP_X: 90, GAP_Y: 28,
  previous: null,

  layout(graph) {
    const column = {};
    const ids = graph.nodes.map((n) => n.id);
    ids.forEach((id) => (column[id] = 0));
    for (let pass = 0; pass < ids.length; pass++) {
      for (const ch of graph.channels) column[ch.dst] = Math.max(column[ch.dst], column[ch.src] + 1);
    }
    const rows = {};
    const place = {};
    for (const id of ids) {
      const c = column[id];
      rows[c] = (rows[c] || 0) + 1;
      place[id] = { x: 10 + c * (DAG.W + DAG.GAP_X), y: 10 + (rows[c] - 1) * (DAG.H + DAG.GAP_Y) };
    }
    const width = 20 + (Math.max(...Object.values(column)) + 1) * (DAG.W + DAG.GAP_X) - DAG.GAP_X;
    const height = 20 + Math.max(...Object.values(rows)) * (DAG.H + DAG.GAP_Y) - DAG.GAP_Y;
    return { place, width, height };
  },

  // rows/s per node from two consecutive heartbeats
  rates(graph) {
    const out = {};
    const prev = DAG.previous;
    if (prev && graph.seconds > prev.seconds) {
      const dt = graph.seconds - prev.seconds;
      const before = Object.fromEntries(prev.nodes.map((n) => [n.id, n]));
      for (const n of graph.nodes) {
        const b = before[n.id];
        if (b) out[n.id] = (Math.max(n.rows_in, n.rows_out) - Math.max(b.rows_in, b.rows_out)) / dt;
      }
    }
    DAG.previous = graph;
    return out;
  },

  draw(container, graph) {
    const NS = "http://www.w3.org/2000/svg";
    const { place, width, height } = DAG.layout(graph);
    const rates = DAG.rates(graph);
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const add = (parent, tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      parent.appendChild(e);
      return e;
    };
    for (const ch of graph.channels) {
      const a = place[ch.src], b = place[ch.dst];
      if (!a || !b) continue;
      const g = add(svg, "g", { class: "edge" + (ch.above_high ? " high" : ""), "data-channel": ch.name });
      const x1 = a.x + DAG.W, y1 = a.y + DAG.H / 2, x2 = b.x, y2 = b.y + DAG.H / 2;
      const mx = (x1 + x2) / 2;
      add(g, "path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` });
      const cap = ch.capacity || 1;
      const fill = Math.min(1, ch.depth / cap);
      const bx = mx - 30, by = (y1 + y2) / 2 - 6;
      add(g, "rect", { class: "cap", x: bx, y: by, width: 60, height: 10 });
      add(g, "rect", { class: "depth", x: bx, y: by, width: 60 * fill, height: 10 });
      add(g, "text", { x: mx, y: by - 4, "text-anchor": "middle", class: "depth-label" }, `${ch.depth}/${cap}`);
    }
    for (const n of graph.nodes) {
      const p = place[n.id];
      const g = add(svg, "g", { class: "node " + n.state, "data-node": n.id, transform: `translate(${p.x},${p.y})` });
      add(g, "rect", { width: DAG.W, height: DAG.H, rx: 6 });
      add(g, "text", { x: 10, y: 18, "font-weight": 700 }, n.id);
      add(g, "text", { x: 10, y: 34, class: "dim" }, `${n.type} · ${n.state}`);
      add(g, "text", { x: 10, y: 52 }, `in ${MDP.num(n.rows_in)} · out ${MDP.num(n.rows_out)}`);
      add(g, "text", { x: 10, y: 68, class: "rate" }, `${MDP.num(rates[n.id])} rows/s`);
      const lag = n.watermark_lag === null || n.watermark_lag === undefined ? "–" : n.watermark_lag.toFixed(1) + " s";
      add(g, "text", { x: 10, y: 84, class: "dim" }, `watermark lag ${lag}`);
      add(g, "text", { x: 10, y: 100, class: "dim" }, `late ${MDP.num(n.late)} · dead letters ${MDP.num(n.dead_letters)}`);
    }
    container.replaceChildren(svg);
  },
};
