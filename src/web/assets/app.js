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

    var url = prefix + encodeURIComponent(file.name);

    // How many bytes of an interrupted upload the server holds (0: none).
    function held(then) {
      var ask = new XMLHttpRequest();
      ask.open("GET", url + "?partial");
      ask.onload = function () {
        var n = ask.status === 200 ? parseInt(ask.responseText, 10) : 0;
        then(n > 0 && n <= file.size ? n : 0);
      };
      ask.onerror = function () { then(0); };
      ask.send();
    }

    // Sends the file from `offset` (what the server already holds). The
    // server keeps what arrives (?resumable), so after a dropped connection
    // the upload continues where the server's bytes end.
    function attempt(tries, offset) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url + (offset > 0 ? "?offset=" + offset : "?resumable"));
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = offset + e.loaded;
      };
      xhr.onload = function () {
        if (xhr.status === 201 || xhr.status === 204) done(true);
        // The bytes held cannot be continued: the whole file again.
        else if ((xhr.status === 409 || xhr.status === 416) && offset > 0) attempt(tries + 1, 0);
        else done(false, xhr.status + " " + xhr.responseText.trim());
      };
      xhr.onerror = function () {
        if (tries >= RETRIES) {
          done(false, "connection lost");
          return;
        }
        label.textContent = file.name + " — connection lost, continuing";
        window.setTimeout(function () {
          held(function (n) {
            label.textContent = file.name;
            attempt(tries + 1, n);
          });
        }, 1000 * (tries + 1));
      };
      // The File (or the rest of it) itself: the browser streams it from
      // disk.
      xhr.send(offset > 0 ? file.slice(offset) : file);
    }
    attempt(0, 0);
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
