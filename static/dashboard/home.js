/* The staff home page: usage, billed revenue and ingestion charts from the page's JSON blocks. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var charts = window.DashboardCharts;
    var usage = charts.readJSON("usage-traces") || [];
    charts.draw(
      "usage-chart",
      usage.map(function (trace) {
        return { name: trace.name, x: trace.x, y: trace.y, unit: trace.unit, kind: "line" };
      }),
      { legend: true, height: 320 }
    );
    var revenue = charts.readJSON("revenue-traces") || [];
    charts.draw(
      "revenue-chart",
      revenue.map(function (trace) {
        return { name: trace.name, x: trace.x, y: trace.y, unit: trace.name, kind: "bar" };
      }),
      { legend: revenue.length > 1, height: 320 }
    );
    var ingestion = charts.readJSON("ingestion-data") || [];
    charts.draw(
      "ingestion-chart",
      [{
        name: "events",
        kind: "bar",
        unit: "events",
        x: ingestion.map(function (row) { return row.hour; }),
        y: ingestion.map(function (row) { return String(row.events); }),
      }],
      { unit: "events / hour", height: 260 }
    );
  });
})();
