// ferry's web interface: what the server-made pages cannot do alone.
// Local dates, a question before deleting, and uploads (file picker or
// drag and drop, several at once, a progress bar each, the File streamed
// by the browser, never read whole into memory). No framework, no network
// but the server's own URLs.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  // Dates: the server writes UTC; show them in the reader's time zone.
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.title = t.textContent;
      t.textContent = d.toLocaleString();
    }
  });

  // Deleting asks first; the server asks itself when this script is absent.
  document.querySelectorAll("form.delete").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var name = form.querySelector('input[name="name"]').value;
      if (!window.confirm("Delete " + name + "?")) {
        event.preventDefault();
        return;
      }
      var yes = document.createElement("input");
      yes.type = "hidden";
      yes.name = "confirm";
      yes.value = "yes";
      form.appendChild(yes);
    });
  });

  var section = document.getElementById("upload");
  if (!section) return;
  section.hidden = false;
  var input = document.getElementById("files");
  // The folder shown: uploads go into it.
  var dir = section.getAttribute("data-dir") || "";
  var prefix = "/files/" + (dir ? dir.split("/").map(encodeURIComponent).join("/") + "/" : "");
  var list = document.getElementById("uploads");
  var running = 0;
  var failed = 0;

  // Retries after a dropped connection, a second apart and then longer.
  var RETRIES = 5;

  function upload(file) {
    var item = document.createElement("li");
    var label = document.createElement("span");
    label.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    item.appendChild(label);
    item.appendChild(bar);
    list.appendChild(item);
    running += 1;

    function done(ok, message) {
      label.textContent = file.name + (ok ? " — uploaded" : " — failed: " + message);
      if (ok) bar.value = bar.max;
      else failed += 1;
      running -= 1;
      if (running === 0 && failed === 0) window.location.reload();
    }

    function attempt(tries) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", prefix + encodeURIComponent(file.name));
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = e.loaded;
      };
      xhr.onload = function () {
        if (xhr.status === 201 || xhr.status === 204) done(true);
        else done(false, xhr.status + " " + xhr.responseText.trim());
      };
      // A dropped connection: the server kept nothing of an HTTP upload,
      // so the file is sent again from its start.
      xhr.onerror = function () {
        if (tries < RETRIES) {
          label.textContent = file.name + " — connection lost, retrying";
          window.setTimeout(function () { attempt(tries + 1); }, 1000 * (tries + 1));
        } else {
          done(false, "connection lost");
        }
      };
      // The File itself: the browser streams it from disk.
      xhr.send(file);
    }
    attempt(0);
  }

  function uploadAll(files) {
    failed = 0;
    for (var i = 0; i < files.length; i++) upload(files[i]);
  }

  input.addEventListener("change", function () {
    uploadAll(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      e.preventDefault();
      section.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      e.preventDefault();
      section.classList.remove("over");
    });
  });
  document.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) uploadAll(e.dataTransfer.files);
  });
})();
