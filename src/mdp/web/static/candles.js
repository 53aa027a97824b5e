// The candle chart: one symbol's bars as Plotly candlesticks over a volume panel. A bar that comes again
// (a revision, or the same bar re-read) replaces the one with its start.
"use strict";

const Candles = {
  KEEP: 500, // bars kept per symbol
  bySymbol: new Map(), // symbol -> Map(start -> bar)
  symbol: null,
  pending: false,

  add(bars) {
    const touched = new Set();
    for (const bar of bars) {
      let series = Candles.bySymbol.get(bar.symbol);
      if (!series) Candles.bySymbol.set(bar.symbol, (series = new Map()));
      series.set(bar.start, bar);
      if (series.size > Candles.KEEP) {
        const oldest = [...series.keys()].sort((a, b) => a - b).slice(0, series.size - Candles.KEEP);
        oldest.forEach((k) => series.delete(k));
      }
      touched.add(bar.symbol);
    }
    return touched;
  },

  series(symbol) {
    const series = Candles.bySymbol.get(symbol);
    return series ? [...series.values()].sort((a, b) => a.start - b.start) : [];
  },

  draw(div) {
    const bars = Candles.series(Candles.symbol);
    const x = bars.map((b) => new Date(b.t));
    const up = bars.map((b) => (b.close >= b.open ? "#26a69a" : "#ef5350"));
    const data = [
      { type: "candlestick", name: Candles.symbol || "", x, open: bars.map((b) => b.open), high: bars.map((b) => b.high),
        low: bars.map((b) => b.low), close: bars.map((b) => b.close), yaxis: "y",
        increasing: { line: { color: "#26a69a" } }, decreasing: { line: { color: "#ef5350" } } },
      { type: "bar", name: "volume", x, y: bars.map((b) => b.volume), yaxis: "y2", marker: { color: up } },
    ];
    const layout = {
      paper_bgcolor: "#171d24", plot_bgcolor: "#171d24", font: { color: "#d7dde4" }, showlegend: false,
      margin: { l: 60, r: 20, t: 10, b: 30 }, uirevision: Candles.symbol,
      xaxis: { rangeslider: { visible: false }, type: "date", gridcolor: "#2a323c", tickformat: "%H:%M:%S" },
      yaxis: { domain: [0.28, 1], gridcolor: "#2a323c", title: { text: "price" } },
      yaxis2: { domain: [0, 0.22], gridcolor: "#2a323c", title: { text: "volume" } },
    };
    Plotly.react(div, data, layout, { displaylogo: false, responsive: true });
  },

  // at most one redraw per animation frame, however many bar messages arrive
  schedule(div) {
    if (Candles.pending) return;
    Candles.pending = true;
    requestAnimationFrame(() => {
      Candles.pending = false;
      Candles.draw(div);
    });
  },
};
