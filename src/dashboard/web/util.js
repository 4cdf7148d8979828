// Small helpers shared by the dashboard's views: DOM building, fetching, formatting.

const API = "api/v1/dashboard";

/** GET a dashboard endpoint (relative to the page, so a path prefix works) and parse its JSON. */
export async function getJson(path, params) {
  return fetchJson(apiUrl(path, params));
}

/** GET the coordinator's own API (`/tasks/1/metrics` → api/v1/tasks/1/metrics) and parse its JSON. */
export async function getApiJson(path, params) {
  return fetchJson(apiUrl(path, params, "api/v1"));
}

async function fetchJson(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).error ?? text;
    } catch {
      // not JSON: show the text as it is
    }
    throw new Error(`${response.status}: ${message}`);
  }
  return JSON.parse(text);
}

/** The URL of a dashboard endpoint with a query; empty values are left out. */
export function apiUrl(path, params = {}, prefix = API) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    query.append(key, String(value));
  }
  const text = query.toString();
  return `${prefix}${path}${text ? `?${text}` : ""}`;
}

/**
 * Creates an element: h("td", { class: "num", "data-count": "x" }, "12"). Children may be
 * strings, nodes, arrays, or null (skipped). Text is always set as text, never as HTML.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Same for SVG. */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) if (child) element.append(child);
  return element;
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const numberFormat = new Intl.NumberFormat(undefined);

export function count(value) {
  return numberFormat.format(value ?? 0);
}

/** A value as a short readable string (numbers to 4 significant digits). */
export function show(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return Number(value.toPrecision(4)).toString();
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Seconds as "1 h 5 min", "4 min 10 s", "12 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** An epoch-ms time as "12 s ago". */
export function ago(at, now = Date.now()) {
  if (!at) return "—";
  return `${duration((now - at) / 1000)} ago`;
}

export function clock(at) {
  if (!at) return "—";
  return new Date(at).toLocaleString();
}

/** Parameters as "lr=0.1 width=4". */
export function paramText(params) {
  return Object.entries(params ?? {})
    .map(([key, value]) => `${key}=${show(value)}`)
    .join(" ");
}

/** A state as a badge with its name in text (colour is never the only cue). */
export function badge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** Colours for series, readable on light and dark backgrounds. */
export const PALETTE = [
  "#1f77b4",
  "#d95f02",
  "#1b9e77",
  "#7570b3",
  "#e7298a",
  "#66a61e",
  "#a6761d",
  "#e6ab02",
];

export function withAlpha(hex, alpha) {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/**
 * Re-renders `root` without losing the keyboard focus inside it: the focused link (by its href)
 * or control (by its id) is focused again in the new content.
 */
export function keepFocus(root, render) {
  const active = document.activeElement;
  const inside = active && active !== root && root.contains(active);
  const href = inside ? active.getAttribute("href") : null;
  const id = inside ? active.id : "";
  render();
  if (!inside) return;
  const again = href
    ? root.querySelector(`[href="${CSS.escape(href)}"]`)
    : id
      ? root.querySelector(`#${CSS.escape(id)}`)
      : null;
  again?.focus({ preventScroll: true });
}
