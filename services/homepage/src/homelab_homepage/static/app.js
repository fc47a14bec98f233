// Progressive enhancement only: the page works without this file (search is a GET form filtered on the server).
(function () {
  "use strict";
  var root = document.documentElement;

  // -- theme toggle: auto (follow the OS) -> light -> dark -> auto -----------------------------------------
  var toggle = document.getElementById("theme-toggle");
  var order = ["auto", "light", "dark"];
  function currentTheme() { return root.getAttribute("data-theme") || "auto"; }
  function showTheme() {
    if (toggle) toggle.querySelector(".theme-label").textContent = "Theme: " + currentTheme();
  }
  if (toggle) {
    toggle.hidden = false;
    showTheme();
    toggle.addEventListener("click", function () {
      var next = order[(order.indexOf(currentTheme()) + 1) % order.length];
      if (next === "auto") root.removeAttribute("data-theme"); else root.setAttribute("data-theme", next);
      try { if (next === "auto") localStorage.removeItem("homepage-theme"); else localStorage.setItem("homepage-theme", next); } catch (e) {}
      showTheme();
    });
  }

  // -- search as you type (the same rule as the server: every term occurs in the card's text) --------------
  var input = document.getElementById("q");
  var apps = document.getElementById("apps");
  var noMatch = document.getElementById("no-match");
  var noMatchQ = document.getElementById("no-match-q");
  if (!input || !apps) return;

  function filter() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    apps.querySelectorAll("section.group").forEach(function (group) {
      var visible = 0;
      group.querySelectorAll("li.card").forEach(function (card) {
        var text = card.getAttribute("data-search") || "";
        var ok = terms.every(function (t) { return text.indexOf(t) !== -1; });
        card.hidden = !ok;
        if (ok) visible++;
      });
      group.hidden = visible === 0;
      shown += visible;
    });
    if (noMatch) {
      noMatch.hidden = !(terms.length && shown === 0);
      if (noMatchQ) noMatchQ.textContent = input.value;
    }
  }

  // A server-filtered page (?q=) holds only the matches: fetch every card once so clearing the box shows all.
  var complete = !new URLSearchParams(location.search).get("q");
  var etag = apps.getAttribute("data-etag") || "";
  function load(force) {
    var headers = force ? {} : { "If-None-Match": '"' + etag + '"' };
    return fetch("/fragment", { headers: headers, cache: "no-cache" }).then(function (r) {
      if (r.status !== 200) return;
      var tag = (r.headers.get("ETag") || "").replace(/"/g, "");
      return r.text().then(function (html) {
        apps.innerHTML = html;  // server-rendered with autoescaping: no annotation value arrives unescaped
        etag = tag;
        complete = true;
        filter();
      });
    }).catch(function () { /* offline for a moment: keep showing the last cards */ });
  }

  input.addEventListener("input", function () {
    if (!complete) load(true); else filter();
    var url = new URL(location.href);
    if (input.value) url.searchParams.set("q", input.value); else url.searchParams.delete("q");
    history.replaceState(null, "", url);
  });
  input.form.addEventListener("submit", function (e) { e.preventDefault(); filter(); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== input) { e.preventDefault(); input.focus(); }
  });

  // -- live refresh of the cards (health changes) ------------------------------------------------------------
  var every = parseInt(apps.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    setInterval(function () { if (!document.hidden) load(!complete); }, every * 1000);
  }
})();
