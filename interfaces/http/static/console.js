// The console's script: applies each snapshot of /console/events to the page, draws
// the two charts as SVG (no library), and re-drives a dead letter on its button.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 600, height: 160, pad: 18 };

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = text(value);
  row.appendChild(td);
  return td;
}

function link(href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = label;
  return a;
}

function line(svg, points, max, cls) {
  const step = (CHART.width - 2 * CHART.pad) / Math.max(points.length - 1, 1);
  const coords = points
    .map((v, i) => (v === null ? null : [CHART.pad + i * step,
      CHART.height - CHART.pad - (v / max) * (CHART.height - 2 * CHART.pad)]))
    .filter((p) => p !== null)
    .map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1));
  const poly = document.createElementNS(SVG, "polyline");
  poly.setAttribute("points", coords.join(" "));
  if (cls) poly.setAttribute("class", cls);
  svg.appendChild(poly);
}

function chart(id, series, unit) {
  const svg = document.getElementById(id);
  if (!svg) return;
  svg.replaceChildren();
  const values = series.flat().filter((v) => v !== null);
  const max = Math.max(1, ...values);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 4);
  label.setAttribute("y", 12);
  label.textContent = "max " + max.toFixed(1) + " " + unit;
  svg.appendChild(label);
  series.forEach((points, i) => line(svg, points, max, i ? "p99" : ""));
}

function apply(data) {
  for (const el of document.querySelectorAll("[data-count]")) {
    el.textContent = text(data.commands[el.dataset.count] || 0);
  }
  chart("throughput", [data.series.map((p) => p.per_s)], "/s");
  chart("latency", [data.series.map((p) => p.p50_ms), data.series.map((p) => p.p99_ms)], "ms");

  const views = document.getElementById("views");
  views.replaceChildren(...data.views.map((v) => {
    const row = document.createElement("tr");
    [v.name, v.position, v.lag, v.lag_seconds].forEach((x) => cell(row, x));
    return row;
  }));

  const dead = document.getElementById("dead");
  dead.replaceChildren(...data.dead_letters.map((d) => {
    const row = document.createElement("tr");
    row.dataset.deadLetter = d.command_id;
    cell(row, "").appendChild(link("/console?command=" + d.command_id, d.command_id));
    [d.type, d.attempts, d.error].forEach((x) => cell(row, x));
    const status = cell(row, d.status);
    status.dataset.statusOf = d.command_id;
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.redrive = d.command_id;
    button.textContent = "Re-drive";
    cell(row, "").appendChild(button);
    return row;
  }));

  for (const [id, sagas] of [["stuck", data.stuck_sagas], ["recent-sagas", data.recent_sagas]]) {
    document.getElementById(id).replaceChildren(...sagas.map((s) => {
      const item = document.createElement("li");
      item.appendChild(link("/console?saga=" + s.saga_id, s.saga_id));
      item.append(" " + s.state);
      return item;
    }));
  }
}

async function redrive(button) {
  const id = button.dataset.redrive;
  button.disabled = true;
  const answer = await fetch("/console/redrive/" + encodeURIComponent(id), {
    method: "POST",
    headers: { "X-Boxoffice-Console": "1" },
    credentials: "same-origin",
  });
  const result = await answer.json();
  const status = document.querySelector('[data-status-of="' + id + '"]');
  if (status) {
    status.textContent = answer.ok ? "re-driven" : text(result.detail || result.error);
  }
}

function connect() {
  const live = document.getElementById("live");
  const stream = new EventSource("/console/events");
  stream.addEventListener("snapshot", (event) => {
    apply(JSON.parse(event.data));
    live.textContent = "live";
    live.className = "live on";
  });
  stream.addEventListener("unavailable", () => {
    live.textContent = "the store is out of reach";
    live.className = "live off";
  });
  stream.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  apply(JSON.parse(document.getElementById("initial").textContent));
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-redrive]");
    if (button) redrive(button);
  });
  connect();
});
