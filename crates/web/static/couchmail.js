// CouchMail's pages work without this script; it only asks before removals
// and copies invitation links.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) { return; }
  var target = document.getElementById(button.getAttribute("data-copy"));
  if (target && navigator.clipboard) {
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  }
});
