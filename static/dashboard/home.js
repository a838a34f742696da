/* The staff home page: usage, billed revenue and ingestion charts from the page's JSON blocks. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var charts = window.DashboardCharts;
    // One small chart per meter, each on its own axis in its own unit.
    var usage = charts.readJSON("usage-traces") || [];
    usage.forEach(function (trace, index) {
      charts.draw("usage-chart-" + (index + 1), [trace], { unit: trace.unit, height: 180 });
    });
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
