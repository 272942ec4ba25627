#!/usr/bin/env python3
"""Browser test of Kiln's web UI: drives Chromium (Debian's /usr/bin/chromium, no download)
with Playwright against a running Kiln that holds known profiles, and checks what the page
shows against exact expectations.

Usage:
    browser_test.py --url http://127.0.0.1:PORT --expect FILE.json --screenshots DIR
                    [--token T] [--tenant ID] [--timeout SECONDS]

    --url          the server (the UI is at /, its API on the same origin)
    --expect       the expectations file (below)
    --screenshots  folder for flamegraph.png, diff.png, span.png, leaks.png and dark.png
                   (created)
    --token        when the server requires a token: the test enters it in the page's
                   credentials dialog, which appears on the first 401
    --tenant       tenant to enter in the same dialog (X-Scope-OrgID)

Install: python3 -m venv tests/ui/.venv && tests/ui/.venv/bin/pip install -r
tests/ui/requirements.txt (Chromium itself comes from the system package).
Run as root with the sandbox off (the flags below).

Expectations (JSON; integers are exact values in the profile's unit, e.g. nanoseconds):
{
  "query": "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\\"checkout\\"}",
  "from": "1700000000",            # unix seconds, as strings (any form /pyroscope/render takes)
  "until": "1700003600",
  "maxNodes": "0",                 # optional: appended to the URL (the UI asks for 65536
                                   # nodes by default; 0 = the server's maximum)
  "total": 123456789,              # the flame graph's total (numTicks)
  "top": [                         # the 5 functions with the largest self value, descending
    {"function": "runtime.mallocgc", "self": 1200000, "total": 3400000},
    ...
  ],                               # (self: sum of the function's frames' self; total: its
                                   # frames' totals counted once per stack, recursion too)
  "click_function": "main.work",   # a function whose first frame (lowest depth, then
                                   # leftmost) is wide enough to click
  "click_stack": ["main.main", "main.work"],
                                   # that frame's call stack, root first; a leading "total"
                                   # (the synthetic root) is ignored on both sides
  "search": "regexp",              # a substring; the UI matches case-insensitively
  "search_matches": 42,            # distinct function names containing it (case-insensitive),
                                   # the root "total" excluded
  "diff": {"leftQuery": "...", "leftFrom": "...", "leftUntil": "...",
           "rightQuery": "...", "rightFrom": "...", "rightUntil": "...",
           "leftTicks": 1000, "rightTicks": 2000},
  "span": {"spanSelector": "00000000000000aa", "query": "...", "from": "...",
           "until": "...", "total": 50000000},         # optional
  "leaks": {"open_query": "<another type>{service_name=\\"leaky\\"}",   # optional
            "query": "memory:inuse_space:bytes:space:bytes{service_name=\\"leaky\\"}",
            "from": "now-1h", "until": "now",
            "first_function": "leaky", "first": 10485760, "last": 40894464,
            "absent": ["steady"]}
}

What it checks: the shared URL `/?query=&from=&until=` loads (window.__kiln.ready); the
total shown (data-total); the first five rows of the function table (data-name, data-self,
data-total; rows with equal self may come in either order); hovering a frame shows the
tooltip; clicking `click_function`'s frame (located through window.__kiln.frameAt) shows its
stack in the stack panel; the search filters the table to `search_matches` rows; sorting by
a header; reloading the URL restores search, zoom, selection and table; export downloads a
gzipped profile.pb.gz; the theme toggle switches and is remembered across a reload; the diff
view opened by URL shows leftTicks and rightTicks; the span view (when given) shows its
total; the leak view (when given) switches to the in-use type, ranks the leak first and links
to the flame graph; a drag on the time series chart selects a range. Throughout: no console errors, no
uncaught exceptions, no Content-Security-Policy violations.

Exit status: 0 when everything matched, 1 with one line per mismatch otherwise, 2 for bad
usage or an unusable expectations file.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Records CSP violations in the page (an init script runs outside the page's policy).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


class Failures:
    def __init__(self):
        self.items = []

    def check(self, ok, message):
        if not ok:
            self.items.append(message)
            print(f"FAIL: {message}", flush=True)
        return ok

    def fail(self, message):
        self.check(False, message)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def page_url(base, params):
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    return f"{base.rstrip('/')}/?{query}"


def strip_root(stack):
    return stack[1:] if stack and stack[0] == "total" else list(stack)


def load_expectations(path):
    try:
        with open(path) as f:
            e = json.load(f)
    except (OSError, ValueError) as err:
        print(f"cannot read the expectations file {path}: {err}", file=sys.stderr)
        sys.exit(2)
    missing = [
        k
        for k in ("query", "from", "until", "total", "top", "click_function", "click_stack",
                  "search", "search_matches", "diff")
        if k not in e
    ]
    if missing:
        print(f"the expectations file lacks {', '.join(missing)}", file=sys.stderr)
        sys.exit(2)
    return e


class Session:
    def __init__(self, page, args, failures):
        self.page = page
        self.args = args
        self.f = failures
        self.timeout = args.timeout * 1000

    def wait_ready(self, what):
        """Waits for the current view's load; answers the UI's {ok, view, error} result."""
        page = self.page
        deadline = time.time() + self.args.timeout
        entered = False
        while True:
            if self.args.token is not None and not entered and page.locator(
                    "[data-testid=auth-dialog][open]").count():
                log("credentials dialog shown: entering the token")
                page.fill("[data-testid=auth-token]", self.args.token)
                if self.args.tenant:
                    page.fill("[data-testid=auth-tenant]", self.args.tenant)
                page.click("[data-testid=auth-submit]")
                entered = True
            if page.evaluate("() => Boolean(window.__kiln && window.__kiln.loaded)"):
                break
            if time.time() > deadline:
                raise RuntimeError(f"{what}: the view did not finish loading within {self.args.timeout} s")
            page.wait_for_timeout(50)
        result = page.evaluate("() => window.__kiln.ready")
        if not result.get("ok"):
            error = page.locator("[data-testid=error]").text_content() or result.get("error")
            self.f.fail(f"{what}: the view failed to load: {error}")
        return result

    def settle(self, predicate, arg, what):
        """After an action that navigates: waits up to 5 s for the page's state to satisfy
        `predicate` (a JS function of `arg`; the checks after report it if it never does), then
        for the load it started."""
        try:
            self.page.wait_for_function(predicate, arg=arg, timeout=5000)
        except PlaywrightTimeout:
            pass
        return self.wait_ready(what)

    def goto(self, params, what):
        url = page_url(self.args.url, params)
        log(f"open {what}: {url}")
        self.page.goto(url)
        return self.wait_ready(what)

    def total(self):
        return int(self.page.get_attribute("[data-testid=total]", "data-total"))

    def rows(self, limit=None):
        return self.page.evaluate(
            """(limit) => [...document.querySelectorAll('[data-testid=top-table-row]')]
                 .slice(0, limit ?? undefined)
                 .map((r) => ({function: r.dataset.name, self: Number(r.dataset.self),
                               total: Number(r.dataset.total)}))""",
            limit,
        )

    def stack(self):
        return self.page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=stack-frame]')].map((li) => li.dataset.name)"
        )


def check_top(f, rows, top):
    got = [(r["function"], int(r["self"]), int(r["total"])) for r in rows[: len(top)]]
    want = [(t["function"], int(t["self"]), int(t["total"])) for t in top]
    if got == want:
        return
    # Equal self values may be ordered differently (the UI breaks ties by name).
    same_selfs = [g[1] for g in got] == [w[1] for w in want]
    if same_selfs and sorted(got) == sorted(want):
        return
    f.fail("top table rows differ:\n  got  " + "\n       ".join(map(str, got))
           + "\n  want " + "\n       ".join(map(str, want)))


def run(args, e):
    f = Failures()
    console_errors = []
    page_errors = []
    os.makedirs(args.screenshots, exist_ok=True)
    shot = lambda page, name: page.screenshot(path=os.path.join(args.screenshots, name), full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        context.add_init_script(CSP_RECORDER)
        page = context.new_page()
        page.set_default_timeout(args.timeout * 1000)

        def on_console(msg):
            if msg.type != "error":
                return
            text = msg.text
            # With a token, the first calls are expected to be refused before the dialog.
            if args.token is not None and "status of 401" in text:
                return
            console_errors.append(text)

        page.on("console", on_console)
        page.on("pageerror", lambda err: page_errors.append(str(err)))
        s = Session(page, args, f)

        # 1. The shared URL of a flame graph.
        params = {"query": e["query"], "from": e["from"], "until": e["until"]}
        if e.get("maxNodes") not in (None, ""):
            params["maxNodes"] = str(e["maxNodes"])
        s.goto(params, "flame graph")
        f.check(s.total() == int(e["total"]), f"total shown is {s.total()}, expected {e['total']}")
        f.check(page.locator("[data-testid=flamegraph-canvas]").is_visible(), "the flame graph canvas is not visible")
        check_top(f, s.rows(), e["top"])

        # 2. Hover and click the expected function's frame.
        rect = page.evaluate("(n) => window.__kiln.frameAt(n)", e["click_function"])
        if not f.check(rect is not None, f"window.__kiln.frameAt({e['click_function']!r}) found no drawn frame"):
            rect = None
        if rect:
            canvas = page.locator("[data-testid=flamegraph-canvas]")
            pos = {"x": rect["x"] + min(rect["w"] / 2, 40), "y": rect["y"] + rect["h"] / 2}
            canvas.hover(position=pos)
            tooltip = page.locator("[data-testid=tooltip]")
            try:
                tooltip.wait_for(state="visible", timeout=5000)
                f.check(e["click_function"] in (tooltip.text_content() or ""),
                        f"the tooltip does not name {e['click_function']!r}: {tooltip.text_content()!r}")
            except PlaywrightTimeout:
                f.fail("hovering a frame shows no tooltip")
            canvas.click(position=pos)
            page.locator("[data-testid=stack-panel]").wait_for(state="visible")
            got = strip_root(s.stack())
            want = strip_root(e["click_stack"])
            f.check(got == want, f"stack panel shows {got}, expected {want}")
            state = page.evaluate("() => window.__kiln.state()")
            f.check(state.get("zoom") not in ("", None) and state.get("sel") not in ("", None),
                    f"clicking a frame did not zoom and select it (state {state})")
        shot(page, "flamegraph.png")

        # 3. Search.
        page.fill("[data-testid=search]", e["search"])
        try:
            page.wait_for_function(
                "(q) => window.__kiln.state().search === q && document.querySelector('[data-testid=search-share]').dataset.matches !== ''",
                arg=e["search"], timeout=5000)
        except PlaywrightTimeout:
            f.fail("typing in the search box did not apply the search")
        matches = int(page.get_attribute("[data-testid=top-table]", "data-rows") or -1)
        f.check(matches == int(e["search_matches"]),
                f"search {e['search']!r} matches {matches} functions, expected {e['search_matches']}")
        names = [r["function"] for r in s.rows()]
        bad = [n for n in names if e["search"].lower() not in n.lower()]
        f.check(not bad, f"rows not matching the search are shown: {bad[:5]}")
        if matches <= 500:
            f.check(len(names) == matches, f"{len(names)} rows shown for {matches} matches")

        # 4. The URL restores the view (search, zoom, selection, table).
        url_before = page.url
        stack_before = s.stack()
        rows_before = s.rows()
        page.reload()
        s.wait_ready("reload")
        f.check(page.url == url_before, f"the URL changed on reload: {url_before} → {page.url}")
        f.check(page.input_value("[data-testid=search]") == e["search"], "the search was not restored from the URL")
        f.check(s.stack() == stack_before, f"the stack panel was not restored: {s.stack()} vs {stack_before}")
        f.check(s.rows() == rows_before, "the function table differs after a reload")
        f.check(page.evaluate("() => window.__kiln.state().zoom") == (state.get("zoom") if rect else ""),
                "the zoomed frame was not restored")

        # 5. Sorting by a header, then back.
        page.fill("[data-testid=search]", "")
        page.wait_for_function("() => window.__kiln.state().search === ''")
        page.click("[data-testid=top-table] th[data-key=total]")
        totals = [r["total"] for r in s.rows(20)]
        f.check(totals == sorted(totals, reverse=True), f"sorting by total gives {totals[:5]}...")
        f.check("sort=total" in page.url, "the table sort is not in the URL")
        page.click("[data-testid=top-table] th[data-key=self]")

        # 6. Export as pprof.
        with page.expect_download(timeout=args.timeout * 1000) as download_info:
            page.click("[data-testid=export-pprof]")
        download = download_info.value
        f.check(download.suggested_filename == "profile.pb.gz",
                f"the export is named {download.suggested_filename!r}")
        path = download.path()
        with open(path, "rb") as fh:
            head = fh.read(2)
        f.check(head == b"\x1f\x8b", "the exported profile is not gzipped")

        # 7. Theme: toggled, remembered.
        before = page.get_attribute("html", "data-theme")
        page.click("[data-testid=theme-toggle]")
        after = page.get_attribute("html", "data-theme")
        f.check(before != after and after in ("light", "dark"), f"the theme toggle went from {before} to {after}")
        if after != "dark":
            page.click("[data-testid=theme-toggle]")
        page.reload()
        s.wait_ready("reload in the dark theme")
        f.check(page.get_attribute("html", "data-theme") == "dark", "the dark theme was not remembered")
        page.wait_for_timeout(100)
        shot(page, "dark.png")
        page.click("[data-testid=theme-toggle]")
        f.check(page.get_attribute("html", "data-theme") == "light", "the theme did not switch back to light")

        # 8. The diff view, by URL.
        d = e["diff"]
        s.goto({"view": "diff", **{k: d[k] for k in ("leftQuery", "leftFrom", "leftUntil",
                                                     "rightQuery", "rightFrom", "rightUntil")}}, "diff")
        page.locator("[data-testid=diff-view]").wait_for(state="visible")
        left = page.get_attribute("[data-testid=left-ticks]", "data-value")
        right = page.get_attribute("[data-testid=right-ticks]", "data-value")
        f.check(left == str(d["leftTicks"]), f"diff left ticks {left}, expected {d['leftTicks']}")
        f.check(right == str(d["rightTicks"]), f"diff right ticks {right}, expected {d['rightTicks']}")
        f.check(s.total() == int(d["leftTicks"]) + int(d["rightTicks"]),
                f"diff total {s.total()} is not left + right")
        page.wait_for_timeout(100)
        shot(page, "diff.png")

        # 9. The span view.
        sp = e.get("span")
        if sp:
            s.goto({"view": "span", "query": sp["query"], "from": sp["from"], "until": sp["until"],
                    "spanSelector": sp["spanSelector"]}, "span")
            f.check(page.input_value("[data-testid=span-input]") == sp["spanSelector"],
                    "the span id field does not show the URL's spanSelector")
            if "total" in sp:
                f.check(s.total() == int(sp["total"]), f"span total {s.total()}, expected {sp['total']}")
        else:
            s.goto({"view": "span", "query": e["query"], "from": e["from"], "until": e["until"]}, "span")
            f.check(page.locator("[data-testid=span-input]").is_visible(), "the span id field is not shown")
        page.wait_for_timeout(100)
        shot(page, "span.png")

        # 10. The leak report (when given): opened with another profile type of the service,
        # the view switches to its in-use type; the leaking function ranks first with its exact
        # first and last values, the fluctuating ones are absent; a click on a row opens the
        # flame graph with that function highlighted.
        lk = e.get("leaks")
        if lk:
            s.goto({"view": "leaks", "query": lk["open_query"], "from": lk["from"], "until": lk["until"]},
                   "leak report")
            st = page.evaluate("() => window.__kiln.state()")
            f.check(st["query"] == lk["query"], f"leak view query {st['query']!r}, expected {lk['query']!r}")
            leaks = page.evaluate(
                """() => [...document.querySelectorAll('[data-testid=leak-row]')].map((r) => ({
                     function: r.dataset.name, first: Number(r.dataset.first), last: Number(r.dataset.last)}))"""
            )
            names = [x["function"] for x in leaks]
            f.check(names[:1] == [lk["first_function"]],
                    f"leak rows {names}, expected {lk['first_function']} first")
            if leaks:
                f.check(leaks[0]["first"] == lk["first"] and leaks[0]["last"] == lk["last"],
                        f"leak first/last {leaks[0]['first']}/{leaks[0]['last']}, expected {lk['first']}/{lk['last']}")
            for name in lk["absent"]:
                f.check(name not in names, f"{name} only fluctuates but is reported as a leak")
            f.check(page.locator("[data-testid=series-chart]").is_visible(), "the leak view shows no time series")
            page.wait_for_timeout(100)
            shot(page, "leaks.png")
            page.click(f"[data-testid=leak-row][data-name='{lk['first_function']}']")
            s.wait_ready("flame graph of a leaking function")
            st = page.evaluate("() => window.__kiln.state()")
            f.check(st["view"] == "flamegraph" and st["fn"] == lk["first_function"],
                    f"a click on a leak opened view={st['view']} fn={st['fn']!r}")
            selected = page.locator("[data-testid=top-table-row].selected").get_attribute("data-name")
            f.check(selected == lk["first_function"], f"the table highlights {selected!r}")

        # 11. A drag on the time series chart selects a range.
        s.goto(params, "flame graph again")
        chart = page.locator("[data-testid=series-chart]")
        box = chart.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
        page.mouse.up()
        s.settle("(f) => window.__kiln.state().from !== f", e["from"], "range selected on the chart")
        st = page.evaluate("() => window.__kiln.state()")
        ok = st["from"].isdigit() and st["until"].isdigit() and int(st["from"]) < int(st["until"])
        f.check(ok, f"a drag on the chart did not select a range: from={st['from']} until={st['until']}")
        page.go_back()
        s.settle("(f) => window.__kiln.state().from === f", e["from"], "back")
        st = page.evaluate("() => window.__kiln.state()")
        f.check(st["from"] == e["from"] and st["until"] == e["until"], "history back did not restore the range")

        violations = page.evaluate("() => window.__cspViolations || []")
        f.check(not violations, f"CSP violations: {violations}")
        browser.close()

    f.check(not console_errors, "console errors:\n  " + "\n  ".join(console_errors))
    f.check(not page_errors, "uncaught exceptions:\n  " + "\n  ".join(page_errors))
    return f.items


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--token")
    parser.add_argument("--tenant")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per step (default 30)")
    args = parser.parse_args()
    expectations = load_expectations(args.expect)
    try:
        failures = run(args, expectations)
    except Exception as err:  # a timeout or a missing element: one clear line, then the trace
        print(f"FAIL: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all UI checks passed")


if __name__ == "__main__":
    main()
