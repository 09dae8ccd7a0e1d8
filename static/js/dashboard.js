/* The dashboard's charts (templates/bans/dashboard.html), drawn by Chart.js from the page's own data.

   The figures come from the JSON the page carries (json_script "dashboard-figures", inside
   #dashboard-panels). There is one clock: htmx swaps #dashboard-panels every refresh_seconds
   (hx-trigger="every Ns"), the fresh panels bring fresh figures, and the charts are redrawn from
   them on htmx:afterSwap. This file sets no timer of its own.

   Without JavaScript (or without Chart.js) the page is whole: the totals, the per-jail table and
   the panels are rendered by the server; the charts are an enhancement. */
(function () {
  "use strict";
  var FIGURES = "dashboard-figures";
  var PANELS = "dashboard-panels";

  function figures() {
    var script = document.getElementById(FIGURES);
    return script ? JSON.parse(script.textContent) : null;
  }

  // each jail's colour comes from the server (bans.views.jail_colours): never two jails alike, and a
  // jail keeps its colour from one period to the next
  function perJail(data, kind) {
    return data.jails.map(function (jail) {
      return {label: jail.name, data: jail[kind], backgroundColor: jail.colour, borderColor: jail.colour};
    });
  }

  // A click on a bar opens what it counts: on a jail's part of the bar, that jail's failures (or
  // bans) in the bar's time; beside the stack, every jail's. The latest figures are read at click
  // time (the panels refresh under the chart).
  function drillDown(kind) {
    return function (event, elements, chart) {
      if (!elements.length) { return; }
      var data = current || figures();
      var index = elements[0].index;
      if (index + 1 >= data.edges.length) { return; }
      var params = {since: data.edges[index], until: data.edges[index + 1]};
      var hit = chart.getElementsAtEventForMode(event, "nearest", {intersect: true}, true);
      if (hit.length && data.jails[hit[0].datasetIndex]) { params.jail = data.jails[hit[0].datasetIndex].name; }
      var base = kind === "failures" ? data.failures_url : data.bans_url;
      window.location.href = base + "?" + new URLSearchParams(params).toString();
    };
  }

  function pointer(event, elements) {
    event.native.target.style.cursor = elements.length ? "pointer" : "default";
  }

  var current = null;

  function bannedLabels(data) { return data.banned.map(function (row) { return row.jail; }); }
  function bannedCounts(data) { return data.banned.map(function (row) { return row.count; }); }

  function stacked(kind) {
    // the tooltip lists every jail of the hovered bar; a click opens the jail's bar under the pointer
    return {animation: false, responsive: true, maintainAspectRatio: false,
            interaction: {mode: "index", intersect: false},
            plugins: {legend: {position: "bottom", labels: {boxWidth: 12, boxHeight: 12}}},
            onClick: drillDown(kind), onHover: pointer,
            scales: {x: {stacked: true, ticks: {autoSkip: true, maxRotation: 0}},
                     y: {stacked: true, beginAtZero: true, ticks: {precision: 0}}}};
  }

  function draw(data) {
    return {
      failures: new Chart(document.getElementById("chart-failures"),
        {type: "bar", data: {labels: data.labels, datasets: perJail(data, "failures")}, options: stacked("failures")}),
      bans: new Chart(document.getElementById("chart-bans"),
        {type: "bar", data: {labels: data.labels, datasets: perJail(data, "bans")}, options: stacked("bans")}),
      banned: new Chart(document.getElementById("chart-banned"), {
        type: "bar",
        data: {labels: bannedLabels(data), datasets: [{label: "banned now", data: bannedCounts(data)}]},
        options: {animation: false, responsive: true, maintainAspectRatio: false, indexAxis: "y",
                  plugins: {legend: {display: false}}, scales: {x: {beginAtZero: true, ticks: {precision: 0}}}}
      })
    };
  }

  function show(charts, data) {
    current = data;
    charts.failures.data.labels = data.labels;
    charts.failures.data.datasets = perJail(data, "failures");
    charts.failures.update();
    charts.bans.data.labels = data.labels;
    charts.bans.data.datasets = perJail(data, "bans");
    charts.bans.update();
    charts.banned.data.labels = bannedLabels(data);
    charts.banned.data.datasets[0].data = bannedCounts(data);
    charts.banned.update();
    document.getElementById("total-failures").textContent = data.totals.failures;
    document.getElementById("total-bans").textContent = data.totals.bans;
    var nothing = !data.totals.failures && !data.totals.bans;
    document.getElementById("chart-area").hidden = nothing;
    document.getElementById("period-empty").hidden = !nothing;
  }

  function start() {
    var data = figures();
    if (!data || !window.Chart || !document.getElementById("chart-area")) { return; }
    current = data;
    var charts = draw(data);
    // htmx fires afterSwap on the new #dashboard-panels (an outerHTML swap), and it bubbles here
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.target && event.target.id === PANELS) {
        var fresh = figures();
        if (fresh) { show(charts, fresh); }
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
