/* The meter analytics page: three tabs on one page (the server renders all three, this switches
 * between them without a reload and keeps the URL in step), and the usage chart. */
(function () {
  "use strict";

  function showTab(name) {
    document.querySelectorAll(".tab-panel").forEach(function (panel) {
      panel.hidden = panel.id !== "tab-" + name;
    });
    document.querySelectorAll(".tabs [data-tab]").forEach(function (link) {
      link.classList.toggle("active", link.getAttribute("data-tab") === name);
      link.setAttribute("aria-selected", link.getAttribute("data-tab") === name ? "true" : "false");
    });
    document.querySelectorAll("#range-form input[name=tab]").forEach(function (input) {
      input.value = name;
    });
    document.querySelectorAll("a[data-keep-tab]").forEach(function (link) {
      var target = new URL(link.href);
      target.searchParams.set("tab", name);
      link.href = target.toString();
    });
    var url = new URL(window.location.href);
    url.searchParams.set("tab", name);
    window.history.replaceState(null, "", url.toString());
    if (name === "overview") window.DashboardCharts.resize("usage-chart");
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".tabs [data-tab]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        showTab(link.getAttribute("data-tab"));
      });
    });
    var series = window.DashboardCharts.readJSON("usage-series");
    if (series) {
      window.DashboardCharts.draw("usage-chart", [series], { unit: series.unit, height: 320 });
    }
    var granularity = document.getElementById("granularity");
    if (granularity) {
      granularity.addEventListener("change", function () {
        granularity.form.submit();
      });
    }
  });
})();
