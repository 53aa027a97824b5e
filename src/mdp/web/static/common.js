// mdp dashboard: what every page shares (the token, API calls, number formats). Our own code, no library.
"use strict";

const MDP = {
  // The token arrives once in the URL (?token=…, printed by `mdp dashboard`); keep it, then drop it from the URL.
  token() {
    const url = new URL(location.href);
    const given = url.searchParams.get("token");
    if (given) {
      localStorage.setItem("mdp-token", given);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    return localStorage.getItem("mdp-token") || "";
  },

  async api(path, options = {}) {
    const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
    if (options.auth) {
      headers["Authorization"] = "Bearer " + MDP.token();
    }
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = { error: response.statusText };
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  },

  num(value, digits = 0) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  },

  showToken() {
    const badge = document.getElementById("token-state");
    if (badge) badge.textContent = MDP.token() ? "token: set" : "token: missing (open the URL mdp dashboard printed)";
  },
};
