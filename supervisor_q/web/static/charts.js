// Throughput and runtime charts (uPlot), from /api/series; no inline script (CSP).
(function () {
  "use strict";
  function draw(div, data) {
    var values = data[div.dataset.kind] || [];
    new uPlot({
      title: div.dataset.title, width: 460, height: 200,
      series: [{}, { label: div.dataset.kind, stroke: "#36c", fill: "rgba(51,102,204,.1)" }],
      axes: [{}, {}],
    }, [data.t || [], values], div);
  }
  function load(container) {
    var queue = container.dataset.queue || "";
    var ranges = {};
    container.querySelectorAll(".chart").forEach(function (div) {
      var range = div.dataset.range;
      if (!ranges[range]) {
        var url = "/api/series?range=" + encodeURIComponent(range) +
                  (queue ? "&queue=" + encodeURIComponent(queue) : "");
        ranges[range] = fetch(url, { credentials: "same-origin" }).then(function (r) {
          return r.json();
        });
      }
      ranges[range].then(function (data) {
        if (!data.available) { return; }
        var note = container.querySelector(".chart-note");
        if (note) { note.remove(); }
        div.textContent = "";
        draw(div, data);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".charts").forEach(load);
  });
})();
