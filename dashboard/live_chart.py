"""Plotly charts that a refresh updates in place (Plotly.react on the same DOM node), never re-creates.

st.plotly_chart gives a chart a new identity whenever its figure changes, so the browser throws the chart
away and draws a new one on every live refresh (the slot stands empty meanwhile and zoom is lost). This
Streamlit component (components v2, mounted in the page itself) keeps one node per key and hands each new
figure to Plotly.react. plotly.js is the copy shipped in the plotly package, served once by the dashboard
at PLOTLY_PATH (see dashboard.serve) and cached by the browser.
"""
from __future__ import annotations

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

export default function (component) {
  const { parentElement, data } = component;
  let node = parentElement.querySelector(":scope > .queuewatch-chart");
  if (!node) {
    node = document.createElement("div");
    node.className = "queuewatch-chart";
    parentElement.appendChild(node);
  }
  const figure = JSON.parse(data);
  node.style.minHeight = (figure.layout && figure.layout.height ? figure.layout.height : 300) + "px";
  plotly().then((Plotly) => Plotly.react(node, figure.data, figure.layout, CONFIG));
}
"""


@st.cache_resource
def _component():
    """The registered component (once per server process)."""
    import json

    js = _JS % {"url": PLOTLY_PATH, "config": json.dumps(CONFIG)}
    return st.components.v2.component("queuewatch.live_chart", js=js, isolate_styles=False)


def live_chart(figure: go.Figure, key: str) -> None:
    """Draw `figure` in the slot named `key`, updating the chart already there in place."""
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    _component()(key=key, data=figure.to_json())
