/* Percentages in the charts written as the pages write them (flywheel/formatting.py's percent):
 * one decimal, two below 1 %, trailing zeros dropped, a space before "%": 0.1 reads "10 %".
 */
(function () {
  "use strict";

  function percentage(value) {
    if (value === null || value === undefined) { return "-"; }
    if (value !== 0 && Math.abs(value) < 0.005) { return "< 0.01 %"; }
    var text = value.toFixed(Math.abs(value) >= 1 ? 1 : 2);
    if (text.indexOf(".") >= 0) { text = text.replace(/0+$/, "").replace(/\.$/, ""); }
    return (text === "-0" ? "0" : text) + " %";
  }

  window.flywheelFormat = {
    percentage: percentage,
    percent: function (fraction) { return fraction === null || fraction === undefined ? "-" : percentage(fraction * 100); }
  };
})();
