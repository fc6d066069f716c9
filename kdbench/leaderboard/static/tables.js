/* Sortable, filterable leaderboard tables. No dependencies; the pages read fine without it.
 *
 * A table with class "lb-table" gets a button in each header cell whose data-type is
 * "number" or "text". Cells sort by their data-sort attribute (else their text); empty
 * values always go last. A number column first sorts best-first (data-better). In a
 * <div class="table-tools">, an <input class="table-filter" data-table="ID"> shows only the
 * rows containing its text, and a <select class="student-filter" data-table="ID"> only the
 * rows whose data-student is the chosen student (option values are "@" + the name, "" for
 * all; rows without a student, the teacher's, stay as context); both apply together.
 * A table may have several <tbody> groups (ranked rows, then preliminary ones): each sorts
 * within itself, and a row with class "group-head" is a group's heading, never sorted.
 * Before printing, folded <details> (charts, legends) are opened.
 */
(function () {
  "use strict";

  function sortValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    raw = raw.trim();
    if (raw === "") return null;
    if (type === "number") {
      var number = parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw.toLowerCase();
  }

  function compare(a, b, descending) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    var order = a < b ? -1 : a > b ? 1 : 0;
    return descending ? -order : order;
  }

  function dataRows(body) {
    return Array.prototype.filter.call(body.rows, function (row) {
      return !row.classList.contains("group-head");
    });
  }

  // Each <tbody> sorts on its own, so a group (the preliminary rows) never moves above
  // another; a group's heading row stays first.
  function sortTable(table, header, descending) {
    var index = header.cellIndex;
    var type = header.getAttribute("data-type");
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = dataRows(body).map(function (row, position) {
        return { row: row, key: sortValue(row, index, type), position: position };
      });
      rows.sort(function (a, b) {
        return compare(a.key, b.key, descending) || a.position - b.position;
      });
      rows.forEach(function (item) { body.appendChild(item.row); });
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function setUpSorting(table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header) {
      var type = header.getAttribute("data-type");
      if (type !== "number" && type !== "text") return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort-button";
      button.title = "Sort by this column";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", function () {
        var current = header.getAttribute("aria-sort");
        var descending;
        if (current === "descending") descending = false;
        else if (current === "ascending") descending = true;
        else descending = type === "number" && header.getAttribute("data-better") === "higher";
        sortTable(table, header, descending);
      });
    });
  }

  function setUpFilters(tools) {
    var input = tools.querySelector("input.table-filter");
    var student = tools.querySelector("select.student-filter");
    var transfer = tools.querySelector("select.transfer-filter");
    var owner = input || student || transfer;
    if (!owner) return;
    var table = document.getElementById(owner.getAttribute("data-table"));
    if (!table || !table.tBodies.length) return;
    var count = tools.querySelector(".table-count");
    var rows = [];
    Array.prototype.forEach.call(table.tBodies, function (body) {
      rows = rows.concat(dataRows(body));
    });
    function apply() {
      var words = input ? input.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
      var chosen = student ? student.value : "";
      var set = transfer ? transfer.value : "";
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        var match = words.every(function (word) { return text.indexOf(word) !== -1; });
        if (match && chosen !== "" && row.hasAttribute("data-student")) {
          match = "@" + row.getAttribute("data-student") === chosen;
        }
        if (match && set !== "") {
          match = row.getAttribute("data-transfer") === set;
        }
        row.hidden = !match;
        if (match) shown += 1;
      });
      if (count) count.textContent = shown + " of " + rows.length + " rows";
    }
    if (input) input.addEventListener("input", apply);
    if (student) student.addEventListener("change", apply);
    if (transfer) transfer.addEventListener("change", apply);
    tools.hidden = false;
    apply();
  }

  // <div class="precision-tools"> holds a <select class="precision-filter">: only the
  // table blocks whose data-precision is the chosen precision stay shown ("" for all).
  function setUpPrecision(tools) {
    var select = tools.querySelector("select.precision-filter");
    if (!select) return;
    var blocks = document.querySelectorAll("section.table-block[data-precision]");
    function apply() {
      Array.prototype.forEach.call(blocks, function (block) {
        block.hidden = select.value !== "" && block.getAttribute("data-precision") !== select.value;
      });
    }
    select.addEventListener("change", apply);
    tools.hidden = false;
    apply();
  }

  // A printed page shows every folded chart and legend.
  function openForPrint() {
    Array.prototype.forEach.call(document.querySelectorAll("details:not([open])"), function (d) {
      d.setAttribute("open", "");
    });
  }

  function init() {
    document.documentElement.classList.add("js");
    Array.prototype.forEach.call(document.querySelectorAll("table.lb-table"), setUpSorting);
    Array.prototype.forEach.call(document.querySelectorAll(".table-tools"), setUpFilters);
    Array.prototype.forEach.call(document.querySelectorAll(".precision-tools"), setUpPrecision);
    window.addEventListener("beforeprint", openForPrint);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
