/* Best under a budget: pick a latency and a parameter limit, see the best row.
 *
 * Every answer is already in the page: a table (the "budget-table") with one cell per
 * pair of limits, each cell marked with data-latency and data-params (the indices of the
 * limits). A <div class="budget-picker" data-table="ID"> holds two selects whose option
 * values are those indices; choosing shows the matching cell's content below them and marks
 * the cell. No dependencies; without JavaScript the picker stays hidden and the table reads.
 */
(function () {
  "use strict";

  function setUpPicker(picker) {
    var table = document.getElementById(picker.getAttribute("data-table"));
    var latency = picker.querySelector("select.budget-latency");
    var params = picker.querySelector("select.budget-params");
    var answer = picker.querySelector(".budget-answer");
    if (!table || !latency || !params || !answer) return;
    var cells = Array.prototype.slice.call(table.querySelectorAll("td[data-latency]"));

    function label(select) {
      return select.options[select.selectedIndex].textContent;
    }

    function apply() {
      var picked = null;
      cells.forEach(function (cell) {
        var hit = cell.getAttribute("data-latency") === latency.value &&
          cell.getAttribute("data-params") === params.value;
        cell.classList.toggle("picked", hit);
        if (hit) picked = cell;
      });
      while (answer.firstChild) answer.removeChild(answer.firstChild);
      answer.appendChild(document.createTextNode(
        "Latency p50 " + label(latency) + ", parameters " + label(params) + ": "));
      if (picked) {
        Array.prototype.forEach.call(picked.childNodes, function (node) {
          answer.appendChild(node.cloneNode(true));
        });
      }
    }

    latency.addEventListener("change", apply);
    params.addEventListener("change", apply);
    picker.hidden = false;
    apply();
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll(".budget-picker"), setUpPicker);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
