/* An experiment's two charts, drawn by the vendored Chart.js from the JSON the page carries.
 *
 * The server computes every number (experiments/admin.py, json_script); this file only draws.
 * Looks not taken yet have no statistic (a gap); provisional days are drawn dashed.
 */
(function () {
  "use strict";

  var COLORS = { control: "#79aec8", variant: "#417690" };
  var RATES = { reply_rate: "reply", meeting_rate: "meeting", close_rate: "close" };

  function drawStatistic(charts) {
    var canvas = document.getElementById("chart-statistic");
    if (!canvas) { return; }
    var lower = charts.upper.map(function (bound) { return bound === null ? null : -bound; });
    var dashed = { borderColor: "#ba2121", borderDash: [6, 4], pointRadius: 0, fill: false, spanGaps: false };
    new Chart(canvas, {
      type: "line",
      data: {
        labels: charts.looks.map(function (look) { return "look " + look; }),
        datasets: [
          Object.assign({ label: "promote above", data: charts.upper }, dashed),
          Object.assign({ label: "the variant loses below", data: lower }, dashed),
          { label: "test statistic z", data: charts.statistic, borderColor: COLORS.variant, backgroundColor: COLORS.variant }
        ]
      },
      options: { maintainAspectRatio: false, scales: { y: { title: { display: true, text: "z" } } } }
    });
  }

  function drawCumulative(charts) {
    var canvas = document.getElementById("chart-cumulative");
    if (!canvas) { return; }
    var datasets = [];
    Object.keys(charts.rates).forEach(function (arm) {
      Object.keys(RATES).forEach(function (rate, i) {
        datasets.push({
          label: arm + " " + RATES[rate] + " rate",
          data: charts.rates[arm][rate],
          borderColor: COLORS[arm],
          borderWidth: 3 - i,
          pointRadius: 0,
          spanGaps: true,
          segment: { borderDash: function (context) { return charts.provisional[context.p1DataIndex] ? [4, 4] : undefined; } }
        });
      });
    });
    new Chart(canvas, {
      type: "line",
      data: {
        labels: charts.days.map(function (day, i) { return charts.provisional[i] ? day + " (provisional)" : day; }),
        datasets: datasets
      },
      options: {
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { callback: function (value) { return window.flywheelFormat.percent(value); } } } }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var element = document.getElementById("experiment-charts");
    if (!element || typeof Chart === "undefined") { return; }
    var charts = JSON.parse(element.textContent);
    drawStatistic(charts);
    drawCumulative(charts);
  });
})();
