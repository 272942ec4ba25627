#!/usr/bin/env python3
"""Benchmark of the web UI's flame graph kernels in headless Chromium (docs/benchmarks.md,
"Web UI: flame graph kernels").

    tests/ui/.venv/bin/python benches/ui/flamegraph.py [--url http://127.0.0.1:4040] [--runs 5]

--url is a running Kiln server, of which only the UI's files are used (/ui/tree.js,
/ui/flamegraph.js, /ui/style.css): the flame graphs are generated here (seeded: every run sees
the same ones) and handed to the page by a Playwright route, so neither the server's speed nor
its data matter. Sizes: 3,000 nodes (the baseline, about one real Go CPU profile), 30,000 and
300,000. Each figure is 1 warm-up and --runs timed runs in one page per size (median, min):
JSON.parse of the answer (the browser's own parser, to compare the tree build with), buildTree,
functionTable, a search, the first draw after setData, full redraws at 1400 CSS px wide with
devicePixelRatio 1 and 2 (the JS alone, and with the canvas rasterized: a 1-pixel getImageData
makes Chromium play back the recorded draw calls), 1,000 hit tests, a zoomed redraw; and the
JS heap held after GC (performance.memory). Prints a Markdown table. Chromium is Debian's
/usr/bin/chromium, launched as tests/ui/browser_test.py launches it.
"""

import argparse
import json
import os
import random
import statistics

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-precise-memory-info",  # performance.memory with exact byte counts
                 "--js-flags=--expose-gc"]  # gc() before each timed run: no garbage of the last one
SIZES = [3_000, 30_000, 300_000]
MAX_STACK = 54  # frames below the root: 55 levels × 18 px = 990 px, a 1400×1000 window
SEARCH = "json"  # matches the encoding/json package: about 1 name in 30

WORDS = ("api cache store index query block merge parse encode decode stream buffer codec "
         "server client worker pool queue batch frame symbol series label table shard").split()
PACKAGES = (["runtime", "sync", "net/http", "encoding/json", "encoding/binary", "compress/gzip",
             "bufio", "io", "os", "sort", "strings", "reflect", "time", "context",
             "google.golang.org/grpc", "google.golang.org/protobuf/proto", "golang.org/x/net/http2"]
            + [f"github.com/acme/shop/internal/{a}/{b}" for a in WORDS[:4] for b in WORDS[4:7]])


def make_names(rng, count):
    """`count` distinct Go-like function names: pkg.Func or pkg.(*Type).Method."""
    names = {}  # a dict keeps the order of insertion: deterministic
    while len(names) < count:
        pkg = rng.choice(PACKAGES)
        verb, noun = rng.choice(WORDS).capitalize(), rng.choice(WORDS).capitalize()
        names[f"{pkg}.(*{noun}{rng.choice(WORDS).capitalize()}).{verb}{rng.randrange(40)}"
              if rng.random() < 0.6 else f"{pkg}.{verb}{noun}{rng.randrange(40)}"] = None
    return list(names)


def flamebearer(nodes, seed=20):
    """A Pyroscope `/pyroscope/render` answer whose flame graph has exactly `nodes` nodes.

    Stacks are random walks through a call graph over nodes**0.8 functions (600 for 3,000
    nodes, 24,000 for 300,000): each function calls a few others, mostly "lower" ones (higher
    index, as application code calls libraries and the runtime), sometimes any (recursion,
    callbacks); walks are 3–54 frames deep (mode 20) and weigh a heavy-tailed number of 10 ms
    CPU samples. Walks are merged into a tree until it has `nodes` nodes, then laid out as
    flamebearer levels: per node [x offset from the previous node's end, total, self, name].
    """
    rng = random.Random(seed * 1_000_003 + nodes)
    pool = int(nodes ** 0.8)
    names = ["total"] + make_names(rng, pool)
    callees = [[min(pool, f + 1 + int(rng.expovariate(20 / pool))) if rng.random() > 0.03
                else rng.randrange(1, pool + 1) for _ in range(1 + min(7, int(rng.expovariate(0.4))))]
               for f in range(pool + 1)]
    parent, name, self_, depth = [-1], [0], [0], [0]
    child = {}  # parent * (pool + 1) + name → node
    while len(parent) < nodes:
        value = int(rng.paretovariate(1.2)) * 10_000_000
        node, f = 0, 1 + min(int(rng.paretovariate(1.5)) - 1, 9)  # one of 10 entry points
        for _ in range(int(rng.triangular(3, MAX_STACK + 1, 20))):
            key = node * (pool + 1) + f
            if key not in child:
                if len(parent) == nodes:
                    break  # the last walk is cut where the tree is full
                child[key] = len(parent)
                parent.append(node); name.append(f); self_.append(0); depth.append(depth[node] + 1)
            node = child[key]
            f = callees[f][min(int(rng.paretovariate(1.0)) - 1, len(callees[f]) - 1)]
        self_[node] += value
    # Totals bottom-up (a child is always created after its parent), children by name.
    total = self_[:]
    kids = [[] for _ in parent]
    for i in range(len(parent) - 1, 0, -1):
        total[parent[i]] += total[i]
        kids[parent[i]].append(i)
    levels = [[] for _ in range(max(depth) + 1)]
    end = [0] * len(levels)
    stack = [(0, 0)]  # depth first, leftmost child first: each level comes out sorted by x
    while stack:
        i, x = stack.pop()
        d = depth[i]
        levels[d] += [x - end[d], total[i], self_[i], name[i]]
        end[d] = x + total[i]
        placed = []  # children from x on, self after them (as Pyroscope lays them out)
        for c in sorted(kids[i], key=lambda c: names[name[c]]):
            placed.append((c, x)); x += total[c]
        stack.extend(reversed(placed))
    return {"flamebearer": {"names": names, "levels": levels, "numTicks": total[0], "maxSelf": max(self_)},
            "metadata": {"format": "single", "units": "samples", "name": "cpu"}}


PAGE = """<!doctype html><html data-theme="light"><head><link rel="stylesheet" href="/ui/style.css">
</head><body><div id="box"><canvas id="fg"></canvas></div><div id="tt" hidden></div></body></html>"""

# Runs in the page. window.B keeps the modules, the answer's text and the tree between calls:
# a GC between them (out of any JS frame) gives the heap each holds.
JS_LOAD = """async (size) => {
  const B = (window.B ||= {tree: await import('/ui/tree.js'), fg: await import('/ui/flamegraph.js')});
  B.text = await (await fetch(`/__uibench/${size}.json`)).text();
}"""
JS_STEPS = ["() => {}", "() => { B.answer = JSON.parse(B.text); }",
            "() => { B.t = B.tree.buildTree(B.answer.flamebearer, 'single'); B.answer = null; }"]
JS_HEAP = "() => (gc(), performance.memory.usedJSHeapSize)"
JS_BENCH = """([runs, search, drawOnly]) => {
  const {tree: T, fg: F} = B, t = B.t, out = {};
  const time = (key, fn, before) => {  // 1 warm-up + runs; `before` and the GC are not timed
    out[key] = [];
    for (let r = 0; r <= runs; r++) {
      if (before) before();
      gc();
      const t0 = performance.now(); fn(); const t1 = performance.now();
      if (r) out[key].push(t1 - t0);
    }
  };
  const box = document.getElementById('box'), canvas = document.getElementById('fg');
  box.style.width = '1400px';
  const g = new F.FlameGraph(canvas, document.getElementById('tt'));
  const raster = () => g.ctx.getImageData(0, 0, 1, 1);  // plays back the recorded draw calls
  if (!drawOnly) {
    time('parse', () => JSON.parse(B.text));
    let fb;  // a freshly parsed answer for each build, as the app builds right after parsing
    time('build', () => T.buildTree(fb, 'single'), () => { fb = JSON.parse(B.text).flamebearer; });
    time('table', () => T.functionTable(t));
    let mask, matched;  // what the app does on each keystroke in the search box
    time('search', () => { mask = T.nameMask(t.names, T.searchPredicate(search)); matched = T.matchedTotals(t, mask); });
    Object.assign(out, {matches: mask.reduce((a, b) => a + b, 0), matched: matched.total / t.total});
    time('first', () => { g.setData(t, {unit: 'nanoseconds'}); g.flush(); raster(); });
  }
  g.setData(t, {unit: 'nanoseconds'});
  g.flush();
  time('drawJs', () => g.flush());
  time('draw', () => { g.flush(); raster(); });
  // 1,000 points from a fixed LCG over the canvas.
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pts = Array.from({length: 1000}, () => [rnd() * g.cssWidth, rnd() * g.cssHeight]);
  time('hit', () => { for (const [x, y] of pts) g.hitTest(x, y); });
  const px = t.w.map((w) => (w * g.cssWidth) / t.total);  // unzoomed: every frame ≥ 0.5 px is drawn
  out.drawn = px.filter((v) => v >= 0.5).length;
  out.labelled = px.filter((v) => v >= 24).length;  // wide enough for a label
  Object.assign(out, {n: t.n, names: t.names.length, levels: t.levels, css: [g.cssWidth, g.cssHeight],
    backing: [canvas.width, canvas.height], isolated: crossOriginIsolated,
    typedBytes: ['x', 'w', 'self', 'name', 'depth', 'parent', 'childStart', 'childEnd']
      .reduce((a, k) => a + t[k].byteLength, 0)});
  // Zoom into the widest frame 8 levels down (as a click does), from the unzoomed graph.
  let z = t.levelStart[Math.min(8, t.levels - 1)];
  for (let i = z; i < t.levelStart[Math.min(9, t.levels)]; i++) if (t.w[i] > t.w[z]) z = i;
  time('zoom', () => { g.setView({zoom: z, selected: z, mask: null}); g.flush(); raster(); },
       () => { g.setView({zoom: 0, selected: -1, mask: null}); g.flush(); raster(); });
  out.zoomShare = t.w[z] / t.total;
  return out;
}"""

ROWS = [  # label, result key, devicePixelRatio
    ("JSON.parse of the answer (baseline: the browser's own parser)", "parse", 1),
    ("`buildTree`", "build", 1),
    ("`functionTable`", "table", 1),
    (f"search \"{SEARCH}\": `searchPredicate` + `nameMask` + `matchedTotals`", "search", 1),
    ("first draw after `setData` (colours, draw, raster), DPR 1", "first", 1),
    ("full redraw, JS only, DPR 1", "drawJs", 1),
    ("full redraw with raster, DPR 1", "draw", 1),
    ("full redraw, JS only, DPR 2", "drawJs", 2),
    ("full redraw with raster, DPR 2", "draw", 2),
    ("1,000 hit tests at random points", "hit", 1),
    ("zoomed redraw (`setView` + draw + raster), DPR 1", "zoom", 1),
]


def machine():
    """The CPU model and the load average (the machine may be shared: it is printed)."""
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        return cpu, " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:4040", help="a running Kiln server (its /ui/ files)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per figure, after 1 warm-up")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    answers = {n: json.dumps(flamebearer(n), separators=(",", ":")) for n in SIZES}
    # Cross-origin isolation gives performance.now() 5 µs steps instead of 100 µs.
    isolation = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}

    def serve(route):  # /__uibench/page.html and /__uibench/<nodes>.json, never the server
        name = route.request.url.rsplit("/", 1)[1]
        if name == "page.html":
            route.fulfill(body=PAGE, headers={**isolation, "Content-Type": "text/html"})
        else:
            route.fulfill(body=answers[int(name.split(".")[0])], headers={"Content-Type": "application/json"})

    (cpu, load), res, heap = machine(), {}, {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for dpr in (1, 2):
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=dpr)
            context.route(f"{base}/__uibench/*", serve)
            for n in SIZES:
                page = context.new_page()  # a fresh page (and heap) per size
                page.on("pageerror", lambda e: print(f"page error: {e}"))
                page.goto(f"{base}/__uibench/page.html")
                page.evaluate(JS_LOAD, n)
                heap[dpr, n] = []  # the answer's text; + the parsed answer; the tree instead of it
                for step in JS_STEPS:
                    page.evaluate(step)
                    heap[dpr, n].append(page.evaluate(JS_HEAP))
                res[dpr, n] = page.evaluate(JS_BENCH, [args.runs, SEARCH, dpr != 1])
                page.close()
            context.close()
        version = browser.version
        browser.close()

    r1 = [res[1, n] for n in SIZES]
    print(f"Chromium {version}, headless, --disable-gpu (software canvas); {cpu}, {os.cpu_count()} CPUs, "
          f"load average {load} before, {machine()[1]} after; timer steps "
          f"{'5 µs' if r1[0]['isolated'] else '100 µs'}; 1 warm-up + {args.runs} runs per figure.\n")
    mib = lambda b: f"{b / 2**20:.1f}"
    ms = lambda v: f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    table = [
        ("Flame graph", [f"{r['n']:,} nodes" for r in r1]),
        ("answer (JSON)", [f"{len(answers[n]) / 1e6:.1f} MB" for n in SIZES]),
        ("distinct names, levels", [f"{r['names']:,}, {r['levels']}" for r in r1]),
        ("canvas, CSS px (backing store at DPR 2)",
         [f"{r['css'][0]}×{r['css'][1]} ({res[2, n]['backing'][0]}×{res[2, n]['backing'][1]})" for n, r in zip(SIZES, r1)]),
        (f"\"{SEARCH}\": functions matched, share of total", [f"{r['matches']:,}, {r['matched']:.1%}" for r in r1]),
        ("frames drawn (wide enough for a label), unzoomed", [f"{r['drawn']:,} ({r['labelled']:,})" for r in r1]),
        ("zoomed frame's share of the total", [f"{r['zoomShare']:.1%}" for r in r1]),
        ("JS heap held after GC, MiB: parsed answer; tree, answer dropped (of which typed arrays)",
         [f"{mib(heap[1, n][1] - heap[1, n][0])}; {mib(heap[1, n][2] - heap[1, n][0])} ({mib(r['typedBytes'])})"
          for n, r in zip(SIZES, r1)]),
        ("**Kernel: median (min) ms**", ["" for _ in SIZES]),
    ] + [(label, [f"{ms(statistics.median(res[dpr, n][key]))} ({ms(min(res[dpr, n][key]))})" for n in SIZES])
         for label, key, dpr in ROWS]
    for k, (label, cells) in enumerate(table):
        print(f"| {label} | " + " | ".join(cells) + " |" + ("\n|---|" + "---|" * len(SIZES) if k == 0 else ""))


if __name__ == "__main__":
    main()
