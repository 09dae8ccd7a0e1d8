/* The main nav on a phone: folded into a "Menu" button (templates/base.html).

   Without JavaScript the button stays hidden and the nav wraps onto its own rows, every link in
   view. With it, the header is marked `nav-folds`: below 720 px the CSS hides the nav until the
   button opens it (aria-expanded), Escape or a second press closes it; wider screens never fold. */
(function () {
  "use strict";
  function start() {
    var button = document.getElementById("nav-toggle");
    var nav = document.getElementById("main-nav");
    if (!button || !nav) { return; }
    button.hidden = false;
    button.closest("header").classList.add("nav-folds");
    function set(open) { button.setAttribute("aria-expanded", open ? "true" : "false"); }
    button.addEventListener("click", function () { set(button.getAttribute("aria-expanded") !== "true"); });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") { set(false); button.focus(); }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
