// greenlight dashboard: swaps the page's live part when the server's event stream sends a
// new one, filters the services table, and posts the actions with the page's token.
// No framework, no build step: this file is embedded in the greenlight binary.
(function () {
  "use strict";
  const token = document.querySelector('meta[name="greenlight-token"]').content;
  const live = document.getElementById("live");
  const filter = document.getElementById("filter");
  const streamState = document.getElementById("stream-state");

  function applyFilter() {
    if (!filter) return;
    const q = filter.value.trim().toLowerCase();
    for (const row of document.querySelectorAll("tr[data-service]")) {
      row.hidden = q !== "" && !row.dataset.service.toLowerCase().includes(q);
    }
  }
  if (filter) {
    filter.addEventListener("input", applyFilter);
    filter.form.addEventListener("submit", (e) => e.preventDefault());
  }

  function focusKey(element) {
    if (!element || !live.contains(element)) return null;
    if (element.id) return "#" + CSS.escape(element.id);
    const href = element.getAttribute("href");
    return href ? 'a[href="' + CSS.escape(href) + '"]' : null;
  }

  if (live && live.dataset.stream && window.EventSource) {
    const source = new EventSource(live.dataset.stream);
    source.addEventListener("live", (e) => {
      // Keyboard users keep their place: the element focused inside the live part is
      // focused again in the new one (found by its id or its link).
      const key = focusKey(document.activeElement);
      live.innerHTML = e.data;
      live.dataset.updated = String(Date.now());
      applyFilter();
      const again = key && live.querySelector(key);
      if (again) again.focus();
    });
    source.addEventListener("open", () => {
      streamState.textContent = "live";
      streamState.className = "ok";
    });
    source.addEventListener("error", () => {
      streamState.textContent = "reconnecting…";
      streamState.className = "refused";
    });
  }

  const message = document.getElementById("message");
  for (const form of document.querySelectorAll("form.action")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      message.textContent = "publishing…";
      message.className = "";
      try {
        const response = await fetch(form.action, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            "x-greenlight-token": token,
          },
          body: new URLSearchParams(new FormData(form)),
        });
        const answer = await response.json();
        message.textContent = answer.message;
        message.className = answer.ok ? "ok" : "refused";
        if (answer.ok) form.reset();
      } catch (err) {
        message.textContent = "the dashboard did not answer (" + err + "): is greenlight dashboard still running?";
        message.className = "refused";
      } finally {
        button.disabled = false;
      }
    });
  }
})();
