/* The customer portal: daily usage charts from the page's JSON block, and the print button. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("print-button");
    if (button) button.addEventListener("click", function () { window.print(); });

    var data = document.getElementById("portal-usage-series");
    if (!data || !window.DashboardCharts) return;
    var series = JSON.parse(data.textContent) || [];
    var boxes = document.querySelectorAll(".portal-chart");
    series.forEach(function (item, index) {
      var box = boxes[index];
      if (!box) return;
      box.id = "portal-chart-" + (index + 1);
      window.DashboardCharts.draw(box.id, [item], { unit: item.unit, height: 240 });
    });
  });
})();
