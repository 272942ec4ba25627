#!/usr/bin/env python3
"""Checks that every Kiln metric the dashboards and alert rules name is exposed.

Usage: check_metrics_named.py METRICS_FILE [METRICS_FILE ...] [--root DIR] [--list]

Reads the PromQL of deploy/grafana/dashboards/*.json (each panel target's `expr`, each template
variable's `query`/`definition`) and of deploy/prometheus/alerts.yaml (each rule's `expr`),
takes every identifier that starts with `kiln_`, and looks it up in the Prometheus text
exposition of the given files (the body of GET /metrics; several files, for example one per
cluster role, are checked as their union).

A name counts as exposed when its family has a `# TYPE` line and the name is one a query can
select for that type. prometheus-client writes a counter as `# TYPE kiln_x counter` with
samples `kiln_x_total`, so a counter is selected as `kiln_x_total`; a histogram `kiln_h` as
`kiln_h_bucket`, `kiln_h_sum` or `kiln_h_count`; a gauge by its family name. A family listed
with no samples yet (labels registered at start, no event yet) counts as exposed.

Prints each name not exposed, one per line, on stdout (why on stderr) and exits 1 if there is
any; exits 0 otherwise. --list prints every name used instead of checking.
Only the standard library is used, so that it runs wherever python3 does.
"""

import argparse
import json
import pathlib
import re
import sys

NAME = re.compile(r"(?<![A-Za-z0-9_:])kiln_[A-Za-z0-9_:]*")
TYPE_LINE = re.compile(r"^#\s+TYPE\s+(\S+)\s+(\S+)\s*$")

# The sample names a query selects for a family of each type.
SUFFIXES = {
    "counter": ["_total"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
    "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
    "summary": ["", "_sum", "_count"],
    "info": ["_info"],
    "stateset": [""],
    "unknown": [""],
    "untyped": [""],
}
# Suffixes stripped to find the family a name belongs to, for the message.
FAMILY_SUFFIXES = ["_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum", "_gcount"]


def promql_of_dashboard(value, found):
    """Collects the PromQL strings of a dashboard: `expr` fields and variable queries."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("expr", "definition") and isinstance(item, str):
                found.append(item)
            elif key == "query" and isinstance(item, str):
                found.append(item)
            else:
                promql_of_dashboard(item, found)
    elif isinstance(value, list):
        for item in value:
            promql_of_dashboard(item, found)


def promql_of_rules(text):
    """Collects the `expr:` values of a rule file, read loosely: a plain, quoted or block
    scalar after `expr:` (no YAML library needed)."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", line)
        i += 1
        if not match:
            continue
        indent, rest = len(match.group(1)), match.group(2).strip()
        if rest.startswith(("|", ">")):
            block = []
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
                i += 1
            found.append("\n".join(block))
        else:
            found.append(rest)
    return found


def strip_comments(promql):
    """Drops PromQL comments (`#` to the end of the line, outside string literals)."""
    kept = []
    for line in promql.splitlines():
        quote = None
        for i, char in enumerate(line):
            if quote:
                if char == "\\":
                    continue
                if char == quote and line[i - 1] != "\\":
                    quote = None
            elif char in "\"'`":
                quote = char
            elif char == "#":
                line = line[:i]
                break
        kept.append(line)
    return "\n".join(kept)


def names_used(root):
    """Maps each kiln_ name to the files that use it."""
    used = {}
    dashboards = sorted((root / "deploy/grafana/dashboards").glob("*.json"))
    rules = root / "deploy/prometheus/alerts.yaml"
    sources = []
    for path in dashboards:
        exprs = []
        promql_of_dashboard(json.loads(path.read_text()), exprs)
        sources.append((path, exprs))
    if rules.exists():
        sources.append((rules, promql_of_rules(rules.read_text())))
    if not sources:
        sys.exit(f"no dashboards or alert rules under {root}")
    for path, exprs in sources:
        for expr in exprs:
            for name in NAME.findall(strip_comments(expr)):
                used.setdefault(name, set()).add(str(path.relative_to(root)))
    return used


def families_exposed(paths):
    """Maps each family with a `# TYPE` line in any of the files to its type."""
    families = {}
    for path in paths:
        for line in pathlib.Path(path).read_text().splitlines():
            match = TYPE_LINE.match(line)
            if match:
                families[match.group(1)] = match.group(2)
    return families


def selectable(families):
    """The sample names a query can select, each with its family."""
    names = {}
    for family, kind in families.items():
        for suffix in SUFFIXES.get(kind, [""]):
            names[family + suffix] = family
    return names


def family_of(name):
    for suffix in FAMILY_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="*", help="files holding a /metrics body")
    parser.add_argument(
        "--root",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[2],
        help="the repository (default: the one this script is in)",
    )
    parser.add_argument("--list", action="store_true", help="print the names used and exit")
    args = parser.parse_args()

    used = names_used(args.root)
    if args.list:
        for name in sorted(used):
            print(name)
        return 0
    if not args.metrics:
        parser.error("give at least one file holding a /metrics body")

    families = families_exposed(args.metrics)
    names = selectable(families)
    missing = []
    for name in sorted(used):
        if name in names:
            continue
        missing.append(name)
        family = family_of(name)
        where = ", ".join(sorted(used[name]))
        if family in families or name in families:
            kind = families.get(family) or families.get(name)
            fam = family if family in families else name
            wanted = " or ".join(fam + s for s in SUFFIXES.get(kind, [""]))
            why = f"family {fam} is a {kind}: select it as {wanted}"
        else:
            why = "no # TYPE line for its family"
        print(f"{name}: {why} (used in {where})", file=sys.stderr)
    for name in missing:
        print(name)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
