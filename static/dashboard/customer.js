/* A customer's page: one chart of daily usage per meter, from the page's JSON block. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var charts = window.DashboardCharts.readJSON("customer-usage-series") || [];
    charts.forEach(function (series, index) {
      window.DashboardCharts.draw("customer-usage-" + (index + 1), [series], { unit: series.unit, height: 240 });
    });
  });
})();
