"""Plotly charts that a refresh updates in place (Plotly.react on the same DOM node), never re-creates.

st.plotly_chart gives a chart a new identity whenever its figure changes, so the browser throws the chart
away and draws a new one on every live refresh (the slot stands empty meanwhile and zoom is lost). This
Streamlit component (components v2, mounted in the page itself) keeps one node per key and hands each new
figure to Plotly.react. plotly.js is the copy shipped in the plotly package, served once by the dashboard
at PLOTLY_PATH (see dashboard.serve) and cached by the browser.

Charts given the same `group` share their time axis: zooming or panning one (plotly_relayout) applies the
same x range to the others on the page. Every chart takes its background, text and grid colours from the
app's current theme (read from the page, so a switch in the settings menu or of the browser's preference
recolours the charts at once).
"""
from __future__ import annotations

import json
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st

PLOTLY_PATH = "/queuewatch/plotly.min.js"
PLOTLY_FILE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CONFIG = {"displaylogo": False, "responsive": True}

_JS = """
const PLOTLY_URL = "%(url)s";
const CONFIG = %(config)s;

function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__queuewatchPlotly) {
    window.__queuewatchPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = PLOTLY_URL;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__queuewatchPlotly = null; reject(new Error("plotly.js not loaded")); };
      document.head.appendChild(script);
    });
  }
  return window.__queuewatchPlotly;
}

function rgb(text) {
  const parts = (text.match(/[\\d.]+/g) || ["255", "255", "255"]).map(Number);
  return parts.slice(0, 3);
}

function themeColours() {
  const app = document.querySelector('[data-testid="stApp"]') || document.body;
  const style = getComputedStyle(app);
  const [r, g, b] = rgb(style.backgroundColor);
  const [tr, tg, tb] = rgb(style.color);
  const dark = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 < 0.5;
  return { background: `rgb(${r}, ${g}, ${b})`, text: `rgb(${tr}, ${tg}, ${tb})`, dark,
           grid: `rgba(${tr}, ${tg}, ${tb}, ${dark ? 0.16 : 0.12})` };
}

function themeUpdate(layout, colours) {
  const update = { paper_bgcolor: colours.background, plot_bgcolor: colours.background,
                   "font.color": colours.text, "legend.bgcolor": "rgba(0,0,0,0)",
                   "hoverlabel.bgcolor": colours.background, "hoverlabel.font.color": colours.text };
  const axes = Object.keys(layout || {}).filter((k) => /^[xy]axis\\d*$/.test(k));
  axes.concat(["xaxis", "yaxis"]).forEach((axis) => {
    update[`${axis}.gridcolor`] = colours.grid;
    update[`${axis}.zerolinecolor`] = colours.grid;
    update[`${axis}.linecolor`] = colours.grid;
  });
  return update;
}

function applyTheme(layout, colours) {
  Object.entries(themeUpdate(layout, colours)).forEach(([path, value]) => {
    const keys = path.split(".");
    let target = layout;
    keys.slice(0, -1).forEach((key) => { target = target[key] = target[key] || {}; });
    target[keys[keys.length - 1]] = value;
  });
  return layout;
}

function watchTheme(Plotly) {
  if (window.__queuewatchThemeTimer) return;
  let shown = themeColours().background;
  window.__queuewatchThemeTimer = setInterval(() => {
    const colours = themeColours();
    if (colours.background === shown) return;
    shown = colours.background;
    document.querySelectorAll(".queuewatch-chart.js-plotly-plot").forEach((node) => {
      Plotly.relayout(node, themeUpdate(node.layout, colours));
    });
  }, 500);
}

const X_KEYS = ["xaxis.range[0]", "xaxis.range[1]", "xaxis.range", "xaxis.autorange"];

function relay(Plotly, node, event) {
  if (window.__queuewatchRelaying) return;
  const update = {};
  X_KEYS.forEach((key) => { if (key in event) update[key] = event[key]; });
  if (!Object.keys(update).length) return;
  const group = node.dataset.group;
  const siblings = Array.from(document.querySelectorAll(".queuewatch-chart.js-plotly-plot"))
    .filter((other) => other !== node && other.dataset.group === group);
  window.__queuewatchRelaying = true;
  Promise.all(siblings.map((other) => Plotly.relayout(other, update)))
    .finally(() => { window.__queuewatchRelaying = false; });
}

export default function (component) {
  const { parentElement, data } = component;
  let node = parentElement.querySelector(":scope > .queuewatch-chart");
  if (!node) {
    node = document.createElement("div");
    node.className = "queuewatch-chart";
    parentElement.appendChild(node);
  }
  const payload = JSON.parse(data);
  const figure = payload.figure;
  node.dataset.group = payload.group || "";
  node.style.minHeight = (figure.layout && figure.layout.height ? figure.layout.height : 300) + "px";
  applyTheme(figure.layout, themeColours());
  plotly().then((Plotly) => Plotly.react(node, figure.data, figure.layout, CONFIG).then(() => {
    watchTheme(Plotly);
    if (!node.__queuewatchRelay) {
      node.__queuewatchRelay = true;
      node.on("plotly_relayout", (event) => { if (node.dataset.group) relay(Plotly, node, event); });
    }
  }));
}
"""


@st.cache_resource
def _component():
    """The registered component (once per server process)."""
    js = _JS % {"url": PLOTLY_PATH, "config": json.dumps(CONFIG)}
    return st.components.v2.component("queuewatch.live_chart", js=js, isolate_styles=False)


def live_chart(figure: go.Figure, key: str, group: str = "") -> None:
    """Draw `figure` in the slot named `key`, updating the chart already there in place; charts of the same
    non-empty `group` zoom together along x."""
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    _component()(key=key, data=f'{{"group": {json.dumps(group)}, "figure": {figure.to_json()}}}')
