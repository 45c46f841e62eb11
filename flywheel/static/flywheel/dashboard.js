/* The admin dashboard's charts, drawn by the vendored Chart.js from the JSON the page carries.
 *
 * The server computes every number (json_script); this file only draws. Provisional weeks (whose
 * outcomes may still arrive) are drawn dashed; a week a version sent nothing is a gap, never 0.
 */
(function () {
  "use strict";

  function data(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function percentAxis() {
    return { beginAtZero: true, ticks: { callback: function (value) { return window.flywheelFormat.percent(value); } } };
  }

  function weekLabels(series) {
    return series.weeks.map(function (week, i) { return series.provisional[i] ? week + " (provisional)" : week; });
  }

  function drawCounts(series) {
    var canvas = document.getElementById("chart-labels");
    if (!canvas) { return; }
    var hatched = series.provisional.map(function (p) { return p ? "rgba(121, 174, 200, 0.35)" : "rgba(121, 174, 200, 0.9)"; });
    new Chart(canvas, {
      data: {
        labels: weekLabels(series),
        datasets: [
          { type: "bar", label: "Labels received", data: series.labels, backgroundColor: hatched },
          { type: "line", label: "Eligible training examples", data: series.eligible, borderColor: "#417690", backgroundColor: "#417690" }
        ]
      },
      options: { maintainAspectRatio: false, plugins: { title: { display: true, text: "Labels and eligible examples" } } }
    });
  }

  function drawRate(series, rate, title) {
    var canvas = document.getElementById("chart-" + rate);
    if (!canvas) { return; }
    var dashed = function (ctx) { return series.provisional[ctx.p1DataIndex] ? [5, 4] : undefined; };
    var datasets = series.versions.map(function (version) {
      return { label: version.version, data: version[rate], spanGaps: false, segment: { borderDash: dashed } };
    });
    new Chart(canvas, {
      type: "line",
      data: { labels: weekLabels(series), datasets: datasets },
      options: {
        maintainAspectRatio: false,
        scales: { y: percentAxis() },
        plugins: {
          title: { display: true, text: title + " per model version" },
          tooltip: { callbacks: { label: function (ctx) {
            var messages = series.versions[ctx.datasetIndex].messages[ctx.dataIndex];
            return ctx.dataset.label + ": " + window.flywheelFormat.percent(ctx.parsed.y) + " of " + messages + " messages";
          } } }
        }
      }
    });
  }

  function drawVersions(timeline) {
    var canvas = document.getElementById("chart-versions");
    if (!canvas) { return; }
    var datasets = timeline.versions.map(function (version) {
      return { type: "line", label: version.version, data: version.points, stepped: true };
    });
    var marks = { promoted: ["Promotion", "triangle", "#2e7d32"], rolled_back: ["Rollback", "crossRot", "#ba2121"] };
    Object.keys(marks).forEach(function (kind) {
      var points = timeline.marks.filter(function (mark) { return mark.kind === kind; });
      datasets.push({ type: "scatter", label: marks[kind][0], data: points, pointStyle: marks[kind][1], pointRadius: 9,
        borderColor: marks[kind][2], backgroundColor: marks[kind][2], borderWidth: 2 });
    });
    new Chart(canvas, {
      data: { datasets: datasets },
      options: {
        maintainAspectRatio: false,
        scales: {
          x: { type: "linear", ticks: { callback: function (value) { return new Date(value).toISOString().slice(0, 10); } } },
          y: { min: 0, max: 100, ticks: { callback: function (value) { return window.flywheelFormat.percentage(value); } } }
        },
        plugins: { title: { display: true, text: "Traffic share per version" } }
      }
    });
  }

  function draw() {
    if (typeof Chart === "undefined") { return; }
    var series = data("dashboard-flywheel");
    if (series) {
      drawCounts(series);
      drawRate(series, "reply_rate", "Reply rate");
      drawRate(series, "meeting_rate", "Meeting rate");
      drawRate(series, "close_rate", "Close rate");
    }
    var timeline = data("dashboard-versions");
    if (timeline && timeline.versions.length) { drawVersions(timeline); }
  }

  document.addEventListener("DOMContentLoaded", draw);
})();
