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

  function perJail(data, kind) {
    return data.jails.map(function (jail) { return {label: jail.name, data: jail[kind]}; });
  }

  function bannedLabels(data) { return data.banned.map(function (row) { return row.jail; }); }
  function bannedCounts(data) { return data.banned.map(function (row) { return row.count; }); }

  function draw(data) {
    var stacked = {animation: false, responsive: true, maintainAspectRatio: false,
                   interaction: {mode: "index", intersect: false},
                   scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true, ticks: {precision: 0}}}};
    return {
      failures: new Chart(document.getElementById("chart-failures"),
        {type: "bar", data: {labels: data.labels, datasets: perJail(data, "failures")}, options: stacked}),
      bans: new Chart(document.getElementById("chart-bans"),
        {type: "bar", data: {labels: data.labels, datasets: perJail(data, "bans")}, options: stacked}),
      banned: new Chart(document.getElementById("chart-banned"), {
        type: "bar",
        data: {labels: bannedLabels(data), datasets: [{label: "banned now", data: bannedCounts(data)}]},
        options: {animation: false, responsive: true, maintainAspectRatio: false, indexAxis: "y",
                  plugins: {legend: {display: false}}, scales: {x: {beginAtZero: true, ticks: {precision: 0}}}}
      })
    };
  }

  function show(charts, data) {
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
