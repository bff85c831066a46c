// The filter editor works without this script: it only hides the fields
// that the chosen kind of condition or action does not use.
"use strict";
(function () {
  function update(select) {
    var item = select.closest("[data-kind]");
    if (!item) { return; }
    item.setAttribute("data-kind", select.value);
    item.querySelectorAll("[data-kinds]").forEach(function (field) {
      var kinds = field.getAttribute("data-kinds").split(" ");
      field.hidden = kinds.indexOf(select.value) < 0;
    });
  }
  document.querySelectorAll("select[data-kind-select]").forEach(update);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-kind-select]")) {
      update(event.target);
    }
  });
})();
