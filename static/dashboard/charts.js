/*
 * Plotly charts for the staff pages. Series arrive as JSON in <script type="application/json">
 * blocks with quantities as exact decimal strings; they become numbers only here, for drawing,
 * while hover text shows the exact value.
 */
(function () {
  "use strict";

  var COLORS = ["#417690", "#e0a030", "#5b9b5b", "#c0504d", "#8064a2", "#4bacc6", "#f79646", "#7f7f7f"];

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  // Plotly reads labels (legend, hover, axis titles) as pseudo-HTML: a meter named
  // `<a href=...>` would become a link. Every label goes through here, so it shows as typed.
  function plain(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;");
  }

  function toNumbers(values) {
    return values.map(function (value) {
      return value === null ? null : Number(value);
    });
  }

  function layout(options) {
    var fg = cssVar("--body-fg", "#333");
    var grid = cssVar("--hairline-color", "#e8e8e8");
    return {
      height: options.height || 300,
      margin: { t: 10, r: 16, b: 48, l: 64 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: fg, size: 12 },
      showlegend: !!options.legend,
      legend: { orientation: "h", y: -0.25 },
      bargap: 0.15,
      barmode: "group",
      xaxis: { type: "date", gridcolor: grid, linecolor: grid },
      yaxis: { title: { text: plain(options.unit) }, rangemode: "tozero", gridcolor: grid, zerolinecolor: grid },
    };
  }

  // series: [{name, x, y, kind: "bar" | "line"}]
  function draw(id, series, options) {
    var node = document.getElementById(id);
    if (!node || !window.Plotly) return;
    options = options || {};
    var traces = series.map(function (item, index) {
      var color = COLORS[index % COLORS.length];
      var trace = {
        name: plain(item.name),
        x: item.x,
        y: toNumbers(item.y),
        customdata: item.y,
        // Labels enter the template as values (%{meta}, the trace's name), never as template
        // text, so a name holding "%{y}" is not evaluated either.
        meta: plain(item.unit || options.unit),
        hovertemplate: "%{x}<br>%{customdata} %{meta}<extra>%{fullData.name}</extra>",
      };
      if (item.kind === "bar") {
        trace.type = "bar";
        trace.marker = { color: color };
      } else {
        trace.type = "scatter";
        trace.mode = "lines+markers";
        trace.connectgaps = false;
        trace.line = { color: color, width: 2 };
        trace.marker = { color: color, size: 5 };
      }
      return trace;
    });
    window.Plotly.newPlot(node, traces, layout(options), {
      displaylogo: false,
      responsive: true,
      modeBarButtonsToRemove: ["lasso2d", "select2d"],
    });
    node.setAttribute("data-rendered", "true");
  }

  function resize(id) {
    var node = document.getElementById(id);
    if (node && window.Plotly && node.getAttribute("data-rendered")) window.Plotly.Plots.resize(node);
  }

  function readJSON(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  window.DashboardCharts = { draw: draw, resize: resize, readJSON: readJSON };
})();
