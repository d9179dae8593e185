"""A real browser for the e2e tests: headless Chromium driven by Playwright, one command
per line.

The Rust tests (tests/e2e/dashboard.rs, through greenlight_e2e::browser) start this script
and write one JSON command per line on its stdin; it answers each with one JSON line on
stdout: {"ok": true, ...} or {"ok": false, "error": "..."}. The browser is Debian's
Chromium (/usr/bin/chromium, or GREENLIGHT_CHROMIUM): Playwright cannot download its own
here. Commands:

  {"op": "goto", "url": U}                      -> {"status": 200}
  {"op": "text", "selector": S}                 -> {"text": "..."} (inner text of the first match)
  {"op": "attribute", "selector": S, "name": N} -> {"value": "..." | null}
  {"op": "wait_text", "selector": S, "contains": T, "timeout_ms": N}
                                                -> {"text": ...} once the element's text has T
  {"op": "wait_attribute", "selector": S, "name": N, "value": V, "timeout_ms": N}
  {"op": "fill", "selector": S, "value": V}
  {"op": "click", "selector": S}
  {"op": "press", "key": K}                     (keyboard: Tab, Enter, ...)
  {"op": "focused"}                             -> {"text": outerHTML of the focused element (start)}
  {"op": "eval", "expression": E}               -> {"value": what the page's JavaScript E gives}
  {"op": "set_viewport", "width": W, "height": H}
  {"op": "screenshot", "path": P}               (full page PNG)
  {"op": "console_errors"}                      -> {"errors": [...]} (console errors, page errors)
  {"op": "quit"}
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("GREENLIGHT_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which a
# closed network refuses; as root it needs --no-sandbox.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        print(json.dumps({"ok": True, "ready": True}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            try:
                answer = run(page, command, errors)
            except Exception as e:  # every failure goes back to the test, which says what failed
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(answer), flush=True)
            if command.get("op") == "quit":
                break
        browser.close()


def run(page, c, errors):
    op = c["op"]
    timeout = c.get("timeout_ms", 10_000)
    if op == "goto":
        response = page.goto(c["url"], wait_until="load")
        return {"ok": True, "status": response.status if response else None}
    if op == "text":
        return {"ok": True, "text": page.locator(c["selector"]).first.inner_text(timeout=timeout)}
    if op == "attribute":
        return {"ok": True, "value": page.locator(c["selector"]).first.get_attribute(c["name"], timeout=timeout)}
    if op == "wait_text":
        page.wait_for_function(
            "([s, t]) => { const e = document.querySelector(s); return e !== null && e.innerText.includes(t); }",
            arg=[c["selector"], c["contains"]],
            timeout=timeout,
            polling=100,
        )
        return {"ok": True, "text": page.locator(c["selector"]).first.inner_text()}
    if op == "wait_attribute":
        page.wait_for_function(
            "([s, n, v]) => { const e = document.querySelector(s); return e !== null && e.getAttribute(n) === v; }",
            arg=[c["selector"], c["name"], c["value"]],
            timeout=timeout,
            polling=100,
        )
        return {"ok": True}
    if op == "fill":
        page.locator(c["selector"]).first.fill(c["value"], timeout=timeout)
        return {"ok": True}
    if op == "click":
        page.locator(c["selector"]).first.click(timeout=timeout)
        return {"ok": True}
    if op == "press":
        page.keyboard.press(c["key"])
        return {"ok": True}
    if op == "focused":
        return {"ok": True, "text": page.evaluate("() => document.activeElement.outerHTML.slice(0, 300)")}
    if op == "eval":
        return {"ok": True, "value": page.evaluate(c["expression"])}
    if op == "set_viewport":
        page.set_viewport_size({"width": c["width"], "height": c["height"]})
        return {"ok": True}
    if op == "screenshot":
        page.screenshot(path=c["path"], full_page=True)
        return {"ok": True}
    if op == "console_errors":
        return {"ok": True, "errors": list(errors)}
    if op == "quit":
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}


if __name__ == "__main__":
    main()
