// The page works without this script; it adds a working Copy button and makes a reload after
// creating a token fetch the list again instead of re-posting the form.
(function () {
  if (document.querySelector("[data-testid=new-token]") && window.history.replaceState) {
    window.history.replaceState(null, "", "/tokens");
  }
  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.copyTarget);
      var text = target.textContent.trim();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
      } else {
        selectText(target);
        try { if (document.execCommand("copy")) { done(); } } catch (e) { /* selected: Ctrl+C works */ }
      }
    });
  });
  // Picking a date means "expire on that date": select that choice for the person.
  var dateField = document.getElementById("expires-on");
  var choice = document.getElementById("expiration");
  if (dateField && choice) {
    dateField.addEventListener("change", function () {
      if (dateField.value) { choice.value = "date"; }
    });
  }
  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
})();
