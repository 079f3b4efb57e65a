// Passkeys (WebAuthn), same-origin only: a button with data-passkey="create" or "get" asks its
// data-options-url for the options (the server's challenge), lets the browser make or use the
// passkey, puts the answer as JSON into the form's field named by data-field, and submits the
// form: the server verifies it (accounts/passkeys.py). Browsers allow passkeys only at their
// site's origin (data-origin): elsewhere (http://127.0.0.1 for http://localhost) the page says
// where to go instead.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBytes(options) {
    options.challenge = toBytes(options.challenge);
    if (options.user) { options.user.id = toBytes(options.user.id); }
    (options.excludeCredentials || []).concat(options.allowCredentials || []).forEach(function (key) {
      key.id = toBytes(key.id);
    });
    return options;
  }

  function answerOf(credential) {
    var response = credential.response;
    var answer = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      answer.response.attestationObject = toText(response.attestationObject);
      answer.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      answer.response.authenticatorData = toText(response.authenticatorData);
      answer.response.signature = toText(response.signature);
      answer.response.userHandle = response.userHandle ? toText(response.userHandle) : null;
    }
    return answer;
  }

  function say(form, message) {
    var status = form.querySelector("[data-passkey-status]");
    if (status) { status.textContent = message; status.hidden = false; }
  }

  var here = window.location.origin;
  var able = !!(window.PublicKeyCredential && navigator.credentials);

  // The sign-in page: the passkey button where passkeys work, a pointer to their site elsewhere.
  document.querySelectorAll("form[data-passkey-form]").forEach(function (form) {
    var button = form.querySelector("button[data-passkey]");
    form.hidden = !(able && button && button.dataset.origin === here);
  });
  document.querySelectorAll("[data-passkey-elsewhere]").forEach(function (note) {
    note.hidden = !able || note.dataset.passkeyElsewhere === here;
  });

  document.querySelectorAll("button[data-passkey]").forEach(function (button) {
    var form = button.form;
    button.addEventListener("click", function () {
      if (!able) { say(form, "This browser cannot use passkeys: use another way."); return; }
      if (button.dataset.origin !== here) {
        say(form, "Passkeys work on this server at " + button.dataset.origin + " (browsers refuse them on an address " +
          "like " + window.location.hostname + "): open this page there.");
        return;
      }
      button.disabled = true;
      fetch(button.dataset.optionsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": form.querySelector("input[name=csrf_token]").value }
      }).then(function (reply) {
        return reply.json().then(function (body) {
          if (body.reauthenticate) { form.submit(); return new Promise(function () {}); }
          if (!reply.ok) { throw new Error(body.message || "The server refused."); }
          var publicKey = withBytes(body);
          return button.dataset.passkey === "create"
            ? navigator.credentials.create({ publicKey: publicKey })
            : navigator.credentials.get({ publicKey: publicKey });
        });
      }).then(function (credential) {
        form.querySelector("input[name=" + button.dataset.field + "]").value = JSON.stringify(answerOf(credential));
        form.submit();
      }).catch(function (error) {
        button.disabled = false;
        say(form, error && error.name === "NotAllowedError"
          ? "No passkey was used (cancelled, timed out, or none for this site on this device)."
          : (error && error.name === "InvalidStateError"
            ? "This device has a passkey for your account already."
            : (error && error.message) || "The passkey could not be used."));
      });
    });
  });
})();
