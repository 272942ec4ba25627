#!/usr/bin/env python3
"""Check otlp_send.py without Kiln: stand-in OTLP servers decode what it sends.

Usage: tests/otlp/.venv/bin/python tests/otlp/selfcheck.py

Starts, on 127.0.0.1 only, an OTLP/HTTP server (POST /v1development/profiles,
protobuf or JSON, optional gzip) and a gRPC ProfilesService server, both decoding
with the official `opentelemetry-proto` classes. It runs otlp_send.py for every
transport x scenario (and with --gzip), then recomputes the figures from the decoded
request -- independently of otlp_send.py's model -- and compares them with the
"expected" block the client printed. For OTLP/JSON it also checks the encoding rules:
hex traceId/spanId/profileId, 64-bit integers as decimal strings, lowerCamelCase keys.
Ends with a line "N passed, M failed"; exits 1 on any failure.
"""
import base64
import gzip
import json
import os
import re
import subprocess
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc_pb
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2_grpc as svc_grpc)

HERE = os.path.dirname(os.path.abspath(__file__))
SENDER = os.path.join(HERE, "otlp_send.py")
NOW_NS = 1_760_000_000_123_456_789

RECEIVED = []  # (transport-ish tag, decoded request or None, error or None)
LOCK = threading.Lock()

INT64_KEYS = {"timeUnixNano", "durationNano", "period", "values", "timestampsUnixNano",
              "address", "memoryStart", "memoryLimit", "fileOffset", "line", "column",
              "startLine", "intValue"}
HEX_LEN = {"traceId": 32, "spanId": 16, "profileId": 32}


class BadRequest(Exception):
    pass


def check_json_rules(node, path="$"):
    """OTLP/JSON encoding rules the client must follow."""
    if isinstance(node, dict):
        for k, v in node.items():
            if "_" in k:
                raise BadRequest("%s.%s: key is not lowerCamelCase" % (path, k))
            if k in HEX_LEN:
                if not (isinstance(v, str) and re.fullmatch("[0-9a-f]{%d}" % HEX_LEN[k], v)):
                    raise BadRequest("%s.%s: %r is not %d lowercase hex digits"
                                     % (path, k, v, HEX_LEN[k]))
            elif k in INT64_KEYS:
                vals = v if isinstance(v, list) else [v]
                if not all(isinstance(x, str) and re.fullmatch("-?[0-9]+", x) for x in vals):
                    raise BadRequest("%s.%s: 64-bit integer not a decimal string: %r"
                                     % (path, k, v))
            else:
                check_json_rules(v, "%s.%s" % (path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_json_rules(v, "%s[%d]" % (path, i))


def hex_to_b64(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in HEX_LEN and isinstance(v, str):
                node[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                hex_to_b64(v)
    elif isinstance(node, list):
        for v in node:
            hex_to_b64(v)
    return node


def validate(req):
    """Reject out-of-range indices, as a server must."""
    d = req.dictionary
    n_str, n_stack, n_loc = len(d.string_table), len(d.stack_table), len(d.location_table)
    for i, f in enumerate(d.function_table):
        for field in ("name_strindex", "system_name_strindex", "filename_strindex"):
            if not 0 <= getattr(f, field) < n_str:
                raise BadRequest("function_table[%d].%s=%d out of range (string_table has %d)"
                                 % (i, field, getattr(f, field), n_str))
    for st in d.stack_table:
        for li in st.location_indices:
            if not 0 <= li < n_loc:
                raise BadRequest("location index %d out of range" % li)
    for rp in req.resource_profiles:
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                for s in p.samples:
                    if not 0 <= s.stack_index < n_stack:
                        raise BadRequest("stack_index %d out of range (stack_table has %d)"
                                         % (s.stack_index, n_stack))
                    if not 0 <= s.link_index < len(d.link_table):
                        raise BadRequest("link_index %d out of range" % s.link_index)


def any_value(d, v):
    which = v.WhichOneof("value")
    if which == "string_value_strindex":
        return d.string_table[v.string_value_strindex]
    return getattr(v, which) if which else None


def figures(req):
    """Per profile, from the decoded request alone."""
    d = req.dictionary
    out = []
    for rp in req.resource_profiles:
        res = {kv.key: any_value(d, kv.value) for kv in rp.resource.attributes}
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                st = (d.string_table[p.sample_type.type_strindex],
                      d.string_table[p.sample_type.unit_strindex])
                pt = (d.string_table[p.period_type.type_strindex],
                      d.string_table[p.period_type.unit_strindex])
                self_count, total, links, attrs = {}, 0, [], {}
                for s in p.samples:
                    n = sum(s.values) if len(s.values) else len(s.timestamps_unix_nano)
                    total += n
                    loc = d.location_table[d.stack_table[s.stack_index].location_indices[0]]
                    if len(loc.lines):
                        leaf = d.string_table[d.function_table[loc.lines[0].function_index]
                                              .name_strindex]
                    else:
                        m = d.mapping_table[loc.mapping_index]
                        leaf = "%s+0x%x" % (os.path.basename(d.string_table[m.filename_strindex]),
                                            loc.address)
                    self_count[leaf] = self_count.get(leaf, 0) + n
                    if s.link_index:
                        ln = d.link_table[s.link_index]
                        links.append((ln.trace_id.hex(), ln.span_id.hex(), n))
                    for ai in s.attribute_indices:
                        a = d.attribute_table[ai]
                        key = d.string_table[a.key_strindex]
                        val = str(any_value(d, a.value))
                        attrs.setdefault(key, {}).setdefault(val, 0)
                        attrs[key][val] += n
                cpu = st == ("samples", "count") and pt == ("cpu", "nanoseconds")
                out.append({
                    "service_name": res.get("service.name"),
                    "resource_attributes": res,
                    "sample_type": "%s:%s" % st,
                    "period_type": "%s:%s" % pt,
                    "period": p.period,
                    "time_unix_nano": p.time_unix_nano,
                    "profile_id": p.profile_id.hex() or None,
                    "total_count": total,
                    "total_cpu_ns": total * p.period if cpu else None,
                    "self_count": self_count,
                    "links": sorted(links),
                    "sample_attributes": attrs,
                })
    return out


def compare(got, exp):
    problems = []
    if len(got) != len(exp["profiles"]):
        return ["%d profiles decoded, %d expected" % (len(got), len(exp["profiles"]))]
    for i, (g, e) in enumerate(zip(got, exp["profiles"])):
        for k in ("service_name", "resource_attributes", "sample_type", "period_type", "period",
                  "time_unix_nano", "profile_id", "total_count", "total_cpu_ns", "self_count"):
            if g[k] != e[k]:
                problems.append("profile %d %s: decoded %r, expected %r" % (i, k, g[k], e[k]))
        elinks = sorted((x["trace_id"], x["span_id"], x["count"]) for x in e["links"])
        if g["links"] != elinks:
            problems.append("profile %d links: %r vs %r" % (i, g["links"], elinks))
        eattrs = {k: {v: c["count"] for v, c in vals.items()}
                  for k, vals in e["sample_attributes"].items()}
        if g["sample_attributes"] != eattrs:
            problems.append("profile %d attrs: %r vs %r" % (i, g["sample_attributes"], eattrs))
    return problems


def record(tag, req, err):
    with LOCK:
        RECEIVED.append((tag, req, err))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        if self.path != "/v1development/profiles":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = svc_pb.ExportProfilesServiceRequest()
            if ctype == "application/json":
                try:
                    doc = json.loads(body)
                except ValueError as e:
                    raise BadRequest("invalid JSON: %s" % e)
                check_json_rules(doc)
                json_format.ParseDict(hex_to_b64(doc), req)
            elif ctype == "application/x-protobuf":
                try:
                    req.ParseFromString(body)
                except Exception as e:  # noqa: BLE001
                    raise BadRequest("invalid protobuf: %s" % e)
            else:
                self.send_error(415)
                return
            validate(req)
        except BadRequest as e:
            record("http", None, str(e))
            msg = json.dumps({"code": 3, "message": str(e)}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        record("http", req, None)
        resp = svc_pb.ExportProfilesServiceResponse()
        out = (json.dumps(json_format.MessageToDict(resp)).encode() if ctype == "application/json"
               else resp.SerializeToString())
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Servicer(svc_grpc.ProfilesServiceServicer):
    def Export(self, request, context):
        try:
            validate(request)
        except BadRequest as e:
            record("grpc", None, str(e))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        record("grpc", request, None)
        return svc_pb.ExportProfilesServiceResponse()


def main():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    gsrv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    svc_grpc.add_ProfilesServiceServicer_to_server(Servicer(), gsrv)
    gport = gsrv.add_insecure_port("127.0.0.1:0")
    gsrv.start()
    targets = {"grpc": "127.0.0.1:%d" % gport,
               "http-proto": "http://127.0.0.1:%d" % httpd.server_address[1],
               "http-json": "http://127.0.0.1:%d" % httpd.server_address[1]}
    scenarios = subprocess.run([sys.executable, SENDER, "--list"], check=True,
                               capture_output=True, text=True).stdout.split()
    passed = failed = 0
    for transport in ("grpc", "http-proto", "http-json"):
        for scenario in scenarios:
            for gz in (False, True):
                with LOCK:
                    RECEIVED.clear()
                cmd = [sys.executable, "-W", "error", SENDER, transport, targets[transport],
                       scenario, "--now-ns", str(NOW_NS)] + (["--gzip"] if gz else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                name = "%s %s%s" % (transport, scenario, " gzip" if gz else "")
                problems = []
                lines = proc.stdout.splitlines()
                if proc.returncode != 0 or len(lines) != 1:
                    problems.append("exit %d, %d stdout lines, stderr: %s"
                                    % (proc.returncode, len(lines), proc.stderr.strip()))
                else:
                    out = json.loads(lines[0])
                    exp = out["expected"]
                    with LOCK:
                        got = list(RECEIVED)
                    ok_status = out["status"] in (200, "OK")
                    if exp["should_accept"]:
                        if not ok_status or len(got) != 1 or got[0][1] is None:
                            problems.append("not accepted: %r %r" % (out["status"], out["body"]))
                        else:
                            problems += compare(figures(got[0][1]), exp)
                    else:
                        if ok_status:
                            problems.append("accepted a bad request: %r" % (out,))
                        elif not out["body"]:
                            problems.append("rejected without an error text")
                    if proc.stderr.strip():
                        problems.append("stderr: " + proc.stderr.strip())
                if problems:
                    failed += 1
                    print("FAIL %s: %s" % (name, "; ".join(problems)))
                else:
                    passed += 1
                    print("ok   %s -> %s %s" % (name, out["status"],
                                                json.dumps(out["body"])[:90]))
    # No server at all: the client must say so with exit code 3.
    proc = subprocess.run([sys.executable, SENDER, "http-proto", "http://127.0.0.1:9",
                           "ebpf-cpu", "--timeout", "2"], capture_output=True, text=True)
    if proc.returncode == 3 and json.loads(proc.stdout)["status"] is None:
        passed += 1
        print("ok   no server -> exit 3")
    else:
        failed += 1
        print("FAIL no server: exit %d %s" % (proc.returncode, proc.stdout))
    httpd.shutdown()
    gsrv.stop(None)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
