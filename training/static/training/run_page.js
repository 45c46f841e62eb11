/* A training run's admin page refreshes itself while the run is active.
 *
 * Every few seconds it asks the run's status.json (the admin's own endpoint, behind its login and
 * permissions) and swaps each field's HTML for the one the admin rendered: the server formats
 * everything, this file only places it. It stops once the run has ended, after one last update,
 * and after repeated failures (saying so on the page). No reload: the reader keeps their place.
 */
(function () {
  "use strict";

  var marker = document.getElementById("run-refresh");
  if (!marker || !window.fetch) { return; }
  var url = marker.dataset.statusUrl;
  var every = parseInt(marker.dataset.refreshMs, 10) || 3000;
  var datasetSha = marker.dataset.datasetSha256 || "";
  var failures = 0;
  var MAX_FAILURES = 5;

  function say(text) { marker.textContent = text; }

  function place(fields) {
    Object.keys(fields).forEach(function (name) {
      var cell = document.querySelector(".field-" + name + " .readonly");
      if (cell && cell.innerHTML !== fields[name]) { cell.innerHTML = fields[name]; }
    });
  }

  function retitle(subtitle) {
    var heading = document.querySelector("#content > h2");
    if (heading && heading.textContent !== subtitle) {
      document.title = document.title.replace(heading.textContent, subtitle);
      heading.textContent = subtitle;
    }
  }

  function apply(answer) {
    place(answer.fields);
    retitle(answer.subtitle);
    if (answer.dataset_panel !== undefined) {
      var panel = document.getElementById("run-dataset");
      if (panel) { panel.innerHTML = answer.dataset_panel; }
    }
    var time = new Date().toLocaleTimeString();
    if (!answer.active) {
      say("This run has ended (" + answer.status_label + "); the page stopped refreshing at " + time + ".");
      return false;
    }
    say("This run is active (" + answer.status_label + "): refreshed at " + time + ", every " + every / 1000 + " s.");
    return true;
  }

  function poll() {
    var address = url + "?dataset_sha256=" + encodeURIComponent(datasetSha);
    fetch(address, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (answer) {
        failures = 0;
        datasetSha = answer.dataset_sha256;
        if (apply(answer)) { window.setTimeout(poll, answer.refresh_ms || every); }
      })
      .catch(function (error) {
        failures += 1;
        if (failures >= MAX_FAILURES) {
          say("The page stopped refreshing after " + failures + " failed attempts (" + error.message + "); reload it.");
          return;
        }
        window.setTimeout(poll, every * failures);
      });
  }

  window.setTimeout(poll, every);
})();
