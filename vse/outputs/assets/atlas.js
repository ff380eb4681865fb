(function () {
  "use strict";
  function params() {
    var out = {}, raw = (location.hash || "").replace(/^#/, "");
    raw.split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("="), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? "" : kv.slice(i + 1);
      try { out[decodeURIComponent(k)] = decodeURIComponent(v.replace(/\+/g, " ")); } catch (e) {}
    });
    return out;
  }
  // Click to enlarge: any a.zoom opens its image (href) with its caption in an overlay.
  var box = null;
  function show(a) {
    if (!box) {
      box = document.createElement("div"); box.id = "lightbox"; box.hidden = true;
      box.innerHTML = "<img alt=''><p></p>";
      box.addEventListener("click", function () { box.hidden = true; });
      document.addEventListener("keydown", function (e) { if (e.key === "Escape") box.hidden = true; });
      document.body.appendChild(box);
    }
    box.querySelector("img").src = a.getAttribute("href");
    box.querySelector("p").textContent = a.getAttribute("data-caption") || "";
    box.hidden = false;
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a.zoom") : null;
    if (a) { e.preventDefault(); show(a); }
  });
  // A link to a card inside a folded section (<details>) opens the folds first.
  function reveal() {
    var id = (location.hash || "").slice(1), el;
    if (!id || id.indexOf("=") >= 0) return;
    try { el = document.getElementById(decodeURIComponent(id)); } catch (e) { return; }
    if (!el) return;
    for (var p = el.parentElement; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  reveal();
  var table = document.getElementById("units");
  if (table) {
    var body = table.tBodies[0], heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var rows = Array.prototype.slice.call(body.rows), text = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var q = document.getElementById("q"), col = document.getElementById("scol"), min = document.getElementById("smin");
    var count = document.getElementById("count"), state = { sort: null, dir: "asc" };
    function cell(r, i) {
      var td = r.cells[i], v = td.getAttribute("data-v");
      if (v === null) return td.textContent.toLowerCase();
      return v === "" ? NaN : parseFloat(v);
    }
    function sortBy(key, dir) {
      var i = heads.findIndex(function (h) { return h.getAttribute("data-key") === key; });
      if (i < 0) return;
      var num = heads[i].getAttribute("data-type") === "num", sign = dir === "desc" ? -1 : 1;
      var keyed = rows.map(function (r, k) { return [cell(r, i), k, r]; });
      keyed.sort(function (a, b) {
        var x = a[0], y = b[0];
        if (num) {  // missing numbers last, whatever the direction
          if (isNaN(x) || isNaN(y)) return isNaN(x) === isNaN(y) ? a[1] - b[1] : (isNaN(x) ? 1 : -1);
          return x === y ? a[1] - b[1] : (x < y ? -sign : sign);
        }
        return x === y ? a[1] - b[1] : (x < y ? -sign : sign);
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (t) { frag.appendChild(t[2]); });
      body.appendChild(frag);
      heads.forEach(function (h, j) { if (j === i) h.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending"); else h.removeAttribute("aria-sort"); });
      state.sort = key; state.dir = dir;
    }
    function filter() {
      var words = (q.value || "").toLowerCase().split(/\s+/).filter(Boolean);
      var ci = col && col.value ? heads.findIndex(function (h) { return h.getAttribute("data-key") === col.value; }) : -1;
      var lo = min && min.value !== "" ? parseFloat(min.value) : NaN, shown = 0;
      rows.forEach(function (r, k) {
        var ok = words.every(function (w) { return text[k].indexOf(w) >= 0; });
        if (ok && ci >= 0 && !isNaN(lo)) { var v = cell(r, ci); ok = !isNaN(v) && v >= lo; }
        r.hidden = !ok; if (ok) shown++;
      });
      count.textContent = shown + " of " + rows.length + " rows";
      table.setAttribute("data-shown", String(shown));
    }
    function save() {
      var p = [];
      if (q.value) p.push("q=" + encodeURIComponent(q.value));
      if (state.sort) p.push("sort=" + encodeURIComponent(state.sort), "dir=" + state.dir);
      if (col && col.value) p.push("col=" + encodeURIComponent(col.value));
      if (min && min.value !== "") p.push("min=" + encodeURIComponent(min.value));
      try { history.replaceState(null, "", "#" + p.join("&")); } catch (e) { /* file:// may refuse; the state is only a convenience */ }
    }
    heads.forEach(function (h) {
      h.addEventListener("click", function () {
        var key = h.getAttribute("data-key");
        var dir = state.sort === key ? (state.dir === "asc" ? "desc" : "asc") : (h.getAttribute("data-type") === "num" ? "desc" : "asc");
        sortBy(key, dir); save();
      });
    });
    [q, col, min].forEach(function (el) { if (el) el.addEventListener("input", function () { filter(); save(); }); });
    var p = params();
    if (p.q) q.value = p.q;
    if (p.col && col) col.value = p.col;
    if (p.min && min) min.value = p.min;
    if (p.sort) sortBy(p.sort, p.dir === "desc" ? "desc" : "asc");
    filter();
  }
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
})();
