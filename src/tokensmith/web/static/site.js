// The pages work without this script. It adds working Copy buttons, makes a reload after
// creating a token fetch the page again instead of re-posting the form, shows the date field
// only when "On a date…" is chosen, locks the scope boxes while a preset of Access is chosen,
// and makes the Projects choice "only these" when a project is ticked.
(function () {
  // A page that shows a new token once was the answer to a form: a reload shows the page again,
  // without the token, rather than post the form a second time.
  if (document.querySelector("[data-testid=new-token]") && window.history.replaceState) {
    window.history.replaceState(null, "", location.pathname.indexOf("/applications") === 0 ? "/applications" : "/tokens");
  }
  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.copyTarget);
      var text = target.textContent.trim();
      var label = button.textContent;
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 3000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
      } else {
        selectText(target);
        try { if (document.execCommand("copy")) { done(); } } catch (e) { /* selected: Ctrl+C works */ }
      }
    });
  });

  // The date field: there when "On a date…" is chosen (always there without this script).
  var choice = document.getElementById("expiration");
  var dateField = document.getElementById("expires-on-field");
  if (choice && dateField) {
    var showDate = function () { dateField.hidden = choice.value !== "date"; };
    choice.addEventListener("change", showDate);
    showDate();
  }

  // Access: a preset ticks its scopes and locks them (the boxes are disabled, and look it);
  // Custom unlocks them, ticked as the preset had them.
  var presets = { "everything": ["api:read", "api:write", "git:read", "git:write", "maven:read"],
                  "read": ["api:read", "git:read", "maven:read"] };
  var scopeBoxes = document.querySelectorAll("input[name=scopes]");
  var followAccess = function () {
    var chosen = document.querySelector("input[name=access]:checked");
    var scopes = chosen ? presets[chosen.value] : null;
    scopeBoxes.forEach(function (box) {
      if (scopes) { box.checked = scopes.indexOf(box.value) >= 0; }
      box.disabled = !!scopes;
    });
  };
  document.querySelectorAll("input[name=access]").forEach(function (radio) {
    radio.addEventListener("change", followAccess);
  });
  followAccess();
  // Projects: ticking one means "only these".
  var some = document.getElementById("projects-some");
  document.querySelectorAll("input[name=projects]").forEach(function (box) {
    box.addEventListener("change", function () { if (some && box.checked) { some.checked = true; } });
  });

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
})();
