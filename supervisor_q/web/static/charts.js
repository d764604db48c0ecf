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
    var drawn = [];
    container.querySelectorAll(".chart").forEach(function (div) {
      var range = div.dataset.range;
      if (!ranges[range]) {
        var url = "/api/series?range=" + encodeURIComponent(range) +
                  (queue ? "&queue=" + encodeURIComponent(queue) : "");
        ranges[range] = fetch(url, { credentials: "same-origin" }).then(function (r) {
          return r.json();
        });
      }
      drawn.push(ranges[range].then(function (data) {
        if (!data.t || !data.t.length) { return; }
        var note = container.querySelector(".chart-note");
        if (note) { note.remove(); }
        div.textContent = "";
        draw(div, data);
      }));
    });
    return Promise.allSettled(drawn);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var all = Array.prototype.map.call(document.querySelectorAll(".charts"), load);
    Promise.allSettled(all).then(function () { document.body.dataset.charts = "done"; });
  });
})();
