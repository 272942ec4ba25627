#!/usr/bin/env python3
"""Send one OTLP profiles request to Kiln, built with the official generated classes.

Usage:
    otlp_send.py <transport> <target> <scenario> [--gzip] [--now-ns N] [--timeout S]
                 [--dump FILE]

    transport  grpc | http-proto | http-json
    target     host:port for grpc (plaintext HTTP/2), or a base URL http://host:port
               for http (the script appends /v1development/profiles)
    scenario   one of SCENARIOS below (`otlp_send.py --list` prints them)

The request is an ExportProfilesServiceRequest from the PyPI package
`opentelemetry-proto` (tests/otlp/requirements.txt pins the version whose generated
code has the proto v1.10 profiles layout; v1.11 is wire-identical).

Prints ONE line of JSON on stdout:
    {"status": <HTTP status int | gRPC code name | null>,
     "body": <response as a dict (MessageToDict / parsed JSON) or error text>,
     "expected": <figures the server should derive, computed here>,
     "transport": ..., "scenario": ..., "gzip": bool, "request_bytes": int}
Exit code: 0 when the transport worked, whatever the server answered (the Rust test
asserts on status/body); 3 when no answer came (connection refused, timeout,
gRPC UNAVAILABLE/DEADLINE_EXCEEDED); 2 for bad usage.

OTLP/JSON (http-json): json_format.MessageToDict with lowerCamelCase keys and integer
enums, then every traceId/spanId (and profileId, as the Collector's pdata does) is
rewritten from base64 to lowercase hex. 64-bit integers stay decimal strings.

All figures are deterministic except the profile's time (now - 10 s; fix it with
--now-ns). Function names start with `kiln_otlp_` where a test looks for them.
"""
import argparse
import base64
import gzip as gzip_mod
import json
import os
import sys
import time
import urllib.error
import urllib.request

from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc_pb
from opentelemetry.proto.common.v1 import common_pb2 as common_pb
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

HTTP_PATH = "/v1development/profiles"
GRPC_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"

# 19 Hz, as Parca's fork of the eBPF profiler samples (upstream's 20 Hz gives 50000000);
# not round, so a wrong multiplication shows.
CPU_PERIOD_NS = 52631578
DURATION_NS = 5_000_000_000  # the eBPF profiler's reporter interval

TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_ID = bytes.fromhex("b7ad6b7169203331")
PROFILE_ID = bytes.fromhex("4b696c6e4f544c5050726f66696c6531")  # "KilnOTLPProfile1"

# Semantic-convention keys for build ids, as the OTel eBPF profiler puts them on
# ProfilesDictionary.mapping_table entries (semconv v1.37 process.executable.build_id.*):
# .gnu is the ELF NT_GNU_BUILD_ID note in hex, .htlhash the profiler's own 128-bit
# file id in hex (its "FileID"), .go the Go build id.
ATTR_BUILD_ID_GNU = "process.executable.build_id.gnu"
ATTR_BUILD_ID_HTLHASH = "process.executable.build_id.htlhash"
ATTR_FRAME_TYPE = "profile.frame.type"

# Garbage for the `garbage`/`malformed` scenarios: field 1, length-delimited, claims
# 127 bytes but 22 follow, so every protobuf decoder must fail.
GARBAGE_PROTO = b"\x0a\x7fnot a protobuf message"
GARBAGE_JSON = b'{"resourceProfiles": [{"scopeProfiles": [ this is not json'


# --------------------------------------------------------------------------------------
# Dictionary builder: every table starts with its zero value, entries are deduplicated.


class Dictionary:
    def __init__(self):
        self.d = pb.ProfilesDictionary()
        self.d.string_table.append("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add(trace_id=b"\0" * 16, span_id=b"\0" * 8)
        self.d.attribute_table.add()
        self.d.stack_table.add()
        self._strings = {"": 0}
        self._functions = {}
        self._mappings = {}
        self._locations = {}
        self._stacks = {}
        self._links = {}
        self._attrs = {}
        self._addresses = {}
        # Frame labels for expected figures, by location index (leaf-first per location).
        self.location_frames = {0: []}
        self.mapping_info = {0: None}

    def s(self, text):
        if text not in self._strings:
            self._strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self._strings[text]

    def function(self, name, filename="", start_line=0):
        key = (name, filename, start_line)
        if key not in self._functions:
            self._functions[key] = len(self.d.function_table)
            self.d.function_table.add(
                name_strindex=self.s(name),
                system_name_strindex=self.s(name),
                filename_strindex=self.s(filename),
                start_line=start_line,
            )
        return self._functions[key]

    def attr(self, key, value, strindex_value=False):
        """A KeyValueAndUnit; value str/int/bool. strindex_value puts a str value in the
        string table (AnyValue.string_value_strindex, new in proto v1.10)."""
        k = (key, type(value).__name__, value, strindex_value)
        if k not in self._attrs:
            any_value = common_pb.AnyValue()
            if isinstance(value, bool):
                any_value.bool_value = value
            elif isinstance(value, int):
                any_value.int_value = value
            elif strindex_value:
                any_value.string_value_strindex = self.s(value)
            else:
                any_value.string_value = value
            self._attrs[k] = len(self.d.attribute_table)
            self.d.attribute_table.add(key_strindex=self.s(key), value=any_value)
        return self._attrs[k]

    def mapping(self, filename, start, limit, offset, build_id_gnu="", build_id_htlhash=""):
        key = (filename, start, limit, offset)
        if key not in self._mappings:
            attrs = []
            if build_id_gnu:
                attrs.append(self.attr(ATTR_BUILD_ID_GNU, build_id_gnu))
            if build_id_htlhash:
                attrs.append(self.attr(ATTR_BUILD_ID_HTLHASH, build_id_htlhash))
            idx = len(self.d.mapping_table)
            self.d.mapping_table.add(
                memory_start=start,
                memory_limit=limit,
                file_offset=offset,
                filename_strindex=self.s(filename),
                attribute_indices=attrs,
            )
            self._mappings[key] = idx
            self.mapping_info[idx] = {
                "file": filename,
                "build_id_gnu": build_id_gnu,
                "build_id_htlhash": build_id_htlhash,
            }
        return self._mappings[key]

    def location(self, lines=(), mapping=0, address=0, frame_type=None):
        """lines: [(function_name, line)] innermost (inlined leaf) first, caller last."""
        key = (tuple(lines), mapping, address, frame_type)
        if key not in self._locations:
            loc = pb.Location(mapping_index=mapping, address=address)
            for name, line in lines:
                loc.lines.add(function_index=self.function(name, *FUNCTIONS.get(name, ("", 0))),
                              line=line)
            if frame_type:
                loc.attribute_indices.append(self.attr(ATTR_FRAME_TYPE, frame_type))
            idx = len(self.d.location_table)
            self.d.location_table.append(loc)
            self._locations[key] = idx
            if lines:
                self.location_frames[idx] = [name for name, _ in lines]
            else:
                base = os.path.basename(self.mapping_info[mapping]["file"]) if mapping else "?"
                self.location_frames[idx] = ["%s+0x%x" % (base, address)]
        return self._locations[key]

    def code_address(self, names):
        """A made-up, stable code address for a (possibly inlined) frame."""
        if names not in self._addresses:
            self._addresses[names] = 0x1000 + 0x40 * len(self._addresses)
        return self._addresses[names]

    def stack(self, location_indices):
        key = tuple(location_indices)
        if key not in self._stacks:
            self._stacks[key] = len(self.d.stack_table)
            self.d.stack_table.add(location_indices=location_indices)
        return self._stacks[key]

    def link(self, trace_id, span_id):
        key = (trace_id, span_id)
        if key not in self._links:
            self._links[key] = len(self.d.link_table)
            self.d.link_table.add(trace_id=trace_id, span_id=span_id)
        return self._links[key]

    def frames(self, stack_index):
        out = []
        for loc in self.d.stack_table[stack_index].location_indices:
            out.extend(self.location_frames[loc])
        return out


# function name -> (file, start_line)
FUNCTIONS = {
    "main": ("app/main.c", 10),
    "run": ("app/main.c", 30),
    "work": ("app/work.c", 5),
    "helper": ("app/work.c", 50),
    "scheduler": ("app/sched.c", 1),
    "kiln_otlp_leaf_a": ("app/leaf.c", 100),
    "kiln_otlp_leaf_b": ("app/leaf.c", 200),
    "kiln_otlp_leaf_c": ("app/leaf.c", 300),
    "kiln_otlp_inlined_leaf": ("app/leaf.h", 10),
    "kiln_otlp_inliner": ("app/leaf.c", 400),
}
LINE_OF = {}  # name -> a call-site line, deterministic


def line_of(name):
    return LINE_OF.setdefault(name, FUNCTIONS.get(name, ("", 1000))[1] + 2)


# --------------------------------------------------------------------------------------
# Request assembly and expected figures


def kv(key, value):
    any_value = common_pb.AnyValue()
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    else:
        any_value.string_value = value
    return common_pb.KeyValue(key=key, value=any_value)


class ProfileBuilder:
    """One Profile plus the model of its samples that the expected figures come from."""

    def __init__(self, dic, target, now_ns, sample_type=("samples", "count"),
                 period_type=("cpu", "nanoseconds"), period=CPU_PERIOD_NS, profile_id=b""):
        """target: the Profile message inside its ScopeProfiles, filled in place."""
        self.dic = dic
        self.time_unix_nano = now_ns - 10_000_000_000
        self.p = target
        self.p.MergeFrom(pb.Profile(
            sample_type=pb.ValueType(type_strindex=dic.s(sample_type[0]),
                                     unit_strindex=dic.s(sample_type[1])),
            time_unix_nano=self.time_unix_nano,
            duration_nano=DURATION_NS,
            period_type=pb.ValueType(type_strindex=dic.s(period_type[0]),
                                     unit_strindex=dic.s(period_type[1])),
            period=period,
            profile_id=profile_id,
        ))
        self.sample_type = sample_type
        self.period_type = period_type
        self.period = period
        self.profile_id = profile_id
        self.model = []  # accepted samples
        self.bad = []  # samples a server must reject

    def sample(self, stack_index, value=None, timestamps=None, link=None, attrs=(), bad=None):
        """value: aggregated count; timestamps: offsets in ns from time_unix_nano
        (each counts as 1); link: (trace_id, span_id); attrs: [(key, value, strindex)]."""
        s = self.p.samples.add(stack_index=stack_index)
        if value is not None:
            s.values.append(value)
        ts = [self.time_unix_nano + off for off in (timestamps or [])]
        s.timestamps_unix_nano.extend(ts)
        if link:
            s.link_index = self.dic.link(*link)
        for key, val, strindex in attrs:
            s.attribute_indices.append(self.dic.attr(key, val, strindex_value=strindex))
        if bad:
            self.bad.append({"stack_index": stack_index, "reason": bad})
            return
        count = value if value is not None else len(ts)
        self.model.append({
            "stack_index": stack_index,
            "frames": self.dic.frames(stack_index),
            "count": count,
            "timestamps_unix_nano": ts,
            "link": {"trace_id": link[0].hex(), "span_id": link[1].hex()} if link else None,
            "attributes": {k: v for k, v, _ in attrs},
        })

    def expected(self, resource_attrs, scope):
        is_cpu = self.sample_type == ("samples", "count") and self.period_type == (
            "cpu", "nanoseconds")
        ns = (lambda c: c * self.period) if is_cpu else (lambda c: None)
        self_count, total_by_fn, links, sample_attrs = {}, {}, [], {}
        for m in self.model:
            leaf = m["frames"][0]
            self_count[leaf] = self_count.get(leaf, 0) + m["count"]
            for fn in set(m["frames"]):
                total_by_fn[fn] = total_by_fn.get(fn, 0) + m["count"]
            if m["link"]:
                links.append(dict(m["link"], count=m["count"], cpu_ns=ns(m["count"])))
            for k, v in m["attributes"].items():
                slot = sample_attrs.setdefault(k, {}).setdefault(str(v), {"count": 0})
                slot["count"] += m["count"]
                slot["cpu_ns"] = ns(slot["count"])
        total = sum(m["count"] for m in self.model)
        service = resource_attrs.get("service.name")
        exe = resource_attrs.get("process.executable.name")
        return {
            "service_name": service,
            # OTel SDK default when service.name is absent: unknown_service:<executable name>
            "service_name_fallback": None if service else (
                "unknown_service:" + exe if exe else "unknown_service"),
            "resource_attributes": resource_attrs,
            "scope": scope,
            "sample_type": "%s:%s" % self.sample_type,
            "period_type": "%s:%s" % self.period_type,
            "period": self.period,
            # Pyroscope's name for samples:count + cpu:nanoseconds (values x period)
            "pyroscope_profile_type": (
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds" if is_cpu else None),
            "time_unix_nano": self.time_unix_nano,
            "time_unix_ms": self.time_unix_nano // 1_000_000,
            "duration_nano": DURATION_NS,
            "profile_id": self.profile_id.hex() if self.profile_id else None,
            "samples": len(self.model),
            "total_count": total,
            "total_cpu_ns": ns(total),
            "self_count": dict(sorted(self_count.items())),
            "self_cpu_ns": {k: ns(v) for k, v in sorted(self_count.items())},
            "total_count_by_function": dict(sorted(total_by_fn.items())),
            "links": links,
            "sample_attributes": sample_attrs,
            "stacks": [{k: m[k] for k in ("frames", "count", "timestamps_unix_nano", "link",
                                          "attributes")} | {"cpu_ns": ns(m["count"])}
                       for m in self.model],
            "bad_samples": self.bad,
        }


class RequestBuilder:
    def __init__(self, now_ns):
        self.now_ns = now_ns
        self.dic = Dictionary()
        self.req = svc_pb.ExportProfilesServiceRequest()
        self.parts = []  # (resource_attrs, scope, ProfileBuilder)

    def resource(self, attrs, scope_name="kiln-otlp-test", scope_version="1.0.0"):
        rp = self.req.resource_profiles.add()
        rp.resource.attributes.extend(kv(k, v) for k, v in attrs.items())
        sp = rp.scope_profiles.add()
        sp.scope.name = scope_name
        sp.scope.version = scope_version
        return rp, sp

    def profile(self, scope_profiles, resource_attrs, **kw):
        pbld = ProfileBuilder(self.dic, scope_profiles.profiles.add(), self.now_ns, **kw)
        self.parts.append((resource_attrs, {"name": scope_profiles.scope.name,
                                            "version": scope_profiles.scope.version}, pbld))
        return pbld

    def finish(self, scenario, should_accept=True, reject_reason=None, **extra):
        self.req.dictionary.CopyFrom(self.dic.d)
        profiles = [pbld.expected(attrs, scope) for attrs, scope, pbld in self.parts]
        by_service = {}
        for prof in profiles:
            name = prof["service_name"] or prof["service_name_fallback"]
            slot = by_service.setdefault(name, {"total_count": 0, "total_cpu_ns": 0})
            slot["total_count"] += prof["total_count"]
            if prof["total_cpu_ns"] is not None:
                slot["total_cpu_ns"] += prof["total_cpu_ns"]
        d = self.dic.d
        expected = {
            "scenario": scenario,
            "should_accept": should_accept,
            "reject_reason": reject_reason,
            "request": {
                "resource_profiles": len(self.req.resource_profiles),
                "profiles": len(profiles),
                "samples": sum(len(p.p.samples) for _, _, p in self.parts),
                "dictionary": {
                    "mapping_table": len(d.mapping_table),
                    "location_table": len(d.location_table),
                    "function_table": len(d.function_table),
                    "link_table": len(d.link_table),
                    "string_table": len(d.string_table),
                    "attribute_table": len(d.attribute_table),
                    "stack_table": len(d.stack_table),
                },
            },
            "total_count": sum(p["total_count"] for p in profiles),
            "total_cpu_ns": sum(p["total_cpu_ns"] or 0 for p in profiles),
            "by_service": by_service,
            "profiles": profiles,
        }
        if not should_accept:
            # A rejected request stores nothing; what a server that dropped only the bad
            # samples/profile (partial success) would hold is kept for reference.
            expected["if_partially_accepted"] = {
                k: expected[k] for k in ("total_count", "total_cpu_ns", "by_service")}
            expected.update(total_count=0, total_cpu_ns=0, by_service={})
        expected.update(extra)
        return self.req, expected


def stack_of(dic, *frames, mapping=0):
    """frames leaf first; a tuple frame is one location with inlined lines."""
    locs = []
    for f in frames:
        names = f if isinstance(f, tuple) else (f,)
        locs.append(dic.location(lines=[(n, line_of(n)) for n in names], mapping=mapping,
                                 address=dic.code_address(names),
                                 frame_type="native"))
    return dic.stack(locs)


def app_mapping(dic):
    return dic.mapping("/usr/bin/app", 0x55D0C0000000, 0x55D0C0100000, 0,
                       build_id_gnu="8d4a0e3f2b1c7a6958e4d3c2b1a09f8e7d6c5b4a",
                       build_id_htlhash="a1b2c3d4e5f60718293a4b5c6d7e8f90")


# --------------------------------------------------------------------------------------
# Scenarios


def scenario_ebpf_cpu(now_ns):
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-ebpf", "host.name": "h1",
             "process.executable.name": "app", "process.pid": 4242}
    _, sp = rb.resource(attrs, "go.opentelemetry.io/ebpf-profiler", "v0.0.0-kiln-test")
    prof = rb.profile(sp, attrs, profile_id=PROFILE_ID)
    d, m = rb.dic, app_mapping(rb.dic)
    prof.sample(stack_of(d, "kiln_otlp_leaf_a", "work", "run", "main", mapping=m), value=3)
    prof.sample(stack_of(d, "kiln_otlp_leaf_b", "helper", "work", "main", mapping=m), value=5)
    # One location with two lines: kiln_otlp_inlined_leaf inlined into kiln_otlp_inliner.
    prof.sample(stack_of(d, ("kiln_otlp_inlined_leaf", "kiln_otlp_inliner"), "work", "run",
                         "main", mapping=m), value=1)
    prof.sample(stack_of(d, "kiln_otlp_leaf_a", "helper", "work", "run", "scheduler", "main",
                         mapping=m), value=2, link=(TRACE_ID, SPAN_ID))
    prof.sample(stack_of(d, "kiln_otlp_leaf_c", "work", "main", mapping=m), value=4,
                attrs=[("thread.name", "kiln-worker-1", False)])
    return rb.finish("ebpf-cpu")


def scenario_timestamps_only(now_ns):
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-ts", "host.name": "h1", "process.executable.name": "tsapp"}
    _, sp = rb.resource(attrs, "go.opentelemetry.io/ebpf-profiler", "v0.0.0-kiln-test")
    prof = rb.profile(sp, attrs)
    d, m = rb.dic, app_mapping(rb.dic)
    ms = 1_000_000
    prof.sample(stack_of(d, "kiln_otlp_ts_leaf_a", "work", "main", mapping=m),
                timestamps=[100 * ms, 1100 * ms, 2100 * ms, 4900 * ms])
    prof.sample(stack_of(d, "kiln_otlp_ts_leaf_b", "work", "main", mapping=m),
                timestamps=[500 * ms, 3500 * ms])
    prof.sample(stack_of(d, "kiln_otlp_ts_leaf_a", "helper", "main", mapping=m),
                timestamps=[2500 * ms])
    return rb.finish("timestamps-only")


def scenario_multi_resource(now_ns):
    rb = RequestBuilder(now_ns)
    d = rb.dic
    shared = stack_of(d, "kiln_otlp_shared_leaf", "work", "main")  # used by a and b
    a_attrs = {"service.name": "otlp-a", "host.name": "h1", "process.executable.name": "a"}
    _, sp = rb.resource(a_attrs, "kiln-otlp-test/a")
    pa = rb.profile(sp, a_attrs)
    pa.sample(stack_of(d, "kiln_otlp_a_leaf", "work", "main"), value=2)
    pa.sample(shared, value=3)
    b_attrs = {"service.name": "otlp-b", "host.name": "h2", "process.executable.name": "b"}
    _, sp = rb.resource(b_attrs, "kiln-otlp-test/b")
    pb_ = rb.profile(sp, b_attrs)
    pb_.sample(stack_of(d, "kiln_otlp_b_leaf", "work", "main"), value=7)
    pb_.sample(shared, value=1)
    # No service.name: semconv name is the base name, the path goes in .path.
    c_attrs = {"host.name": "h1", "process.executable.name": "foo",
               "process.executable.path": "/usr/bin/foo"}
    _, sp = rb.resource(c_attrs, "kiln-otlp-test/c")
    pc = rb.profile(sp, c_attrs)
    pc.sample(stack_of(d, "kiln_otlp_foo_leaf", "main"), value=6)
    return rb.finish("multi-resource")


def scenario_unsymbolized(now_ns):
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-native", "host.name": "h1",
             "process.executable.name": "app"}
    _, sp = rb.resource(attrs, "go.opentelemetry.io/ebpf-profiler", "v0.0.0-kiln-test")
    prof = rb.profile(sp, attrs)
    d = rb.dic
    libc = d.mapping("/usr/lib/libc.so.6", 0x7F1C2A400000, 0x7F1C2A5B0000, 0x28000,
                     build_id_gnu="c1e2a3b4d5f6071829304a5b6c7d8e9fa0b1c2d3",
                     build_id_htlhash="0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    app = app_mapping(d)

    def native(mapping, address):
        return d.location(mapping=mapping, address=address, frame_type="native")

    prof.sample(d.stack([native(libc, 0x9A1B4), native(app, 0x1234), native(app, 0x1000)]),
                value=4)
    prof.sample(d.stack([native(libc, 0x11F0A0), native(libc, 0x9A2C0), native(app, 0x1234),
                         native(app, 0x1000)]), value=3)
    prof.sample(d.stack([native(app, 0x2200), native(app, 0x1000)]), value=2)
    mappings = {}
    for idx, info in d.mapping_info.items():
        if info:
            mappings[info["file"]] = dict(info, memory_start=d.d.mapping_table[idx].memory_start,
                                          memory_limit=d.d.mapping_table[idx].memory_limit,
                                          file_offset=d.d.mapping_table[idx].file_offset)
    req, exp = rb.finish("unsymbolized", build_id_attributes=[ATTR_BUILD_ID_GNU,
                                                              ATTR_BUILD_ID_HTLHASH],
                         mappings=mappings)
    # Self totals by mapping file (frame labels are "<basename>+0x<address>").
    by_mapping = {}
    for frame, count in exp["profiles"][0]["self_count"].items():
        base = frame.split("+", 1)[0]
        by_mapping[base] = by_mapping.get(base, 0) + count
    exp["self_count_by_mapping"] = by_mapping
    return req, exp


def scenario_out_of_range(now_ns):
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-oor", "host.name": "h1", "process.executable.name": "app"}
    _, sp = rb.resource(attrs)
    prof = rb.profile(sp, attrs)
    d = rb.dic
    prof.sample(stack_of(d, "kiln_otlp_oor_leaf", "main"), value=1)
    bad_index = len(d.d.stack_table) + 10
    prof.sample(bad_index, value=2, bad="stack_index %d out of range (stack_table has %d)" % (
        bad_index, len(d.d.stack_table)))
    return rb.finish("out-of-range", should_accept=False,
                     reject_reason="Sample.stack_index beyond ProfilesDictionary.stack_table",
                     bad_stack_index=bad_index, stack_table_len=len(d.d.stack_table))


def scenario_bad_strindex(now_ns):
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-bad", "host.name": "h1", "process.executable.name": "app"}
    _, sp = rb.resource(attrs)
    prof = rb.profile(sp, attrs)
    d = rb.dic
    prof.sample(stack_of(d, "kiln_otlp_bad_leaf", "main"), value=1)
    bad_fn = d.function("kiln_otlp_bad_leaf", *FUNCTIONS.get("kiln_otlp_bad_leaf", ("", 0)))
    bad_strindex = len(d.d.string_table) + 100
    d.d.function_table[bad_fn].name_strindex = bad_strindex
    return rb.finish("bad-strindex", should_accept=False,
                     reject_reason="Function.name_strindex beyond ProfilesDictionary.string_table",
                     bad_function_index=bad_fn, bad_name_strindex=bad_strindex,
                     string_table_len=len(d.d.string_table))


def scenario_strindex(now_ns):
    """proto v1.10 reference-based attribute value: AnyValue.string_value_strindex."""
    rb = RequestBuilder(now_ns)
    attrs = {"service.name": "otlp-strindex", "host.name": "h1",
             "process.executable.name": "app"}
    _, sp = rb.resource(attrs)
    prof = rb.profile(sp, attrs)
    d = rb.dic
    prof.sample(stack_of(d, "kiln_otlp_strindex_leaf", "work", "main"), value=2,
                attrs=[("thread.name", "kiln-strindex-thread", True)])
    prof.sample(stack_of(d, "kiln_otlp_plain_leaf", "work", "main"), value=3)
    return rb.finish("strindex")


def scenario_garbage(now_ns):
    return None, {"scenario": "garbage", "should_accept": False,
                  "reject_reason": "undecodable body", "total_count": 0, "total_cpu_ns": 0,
                  "by_service": {}, "profiles": []}


SCENARIOS = {
    "ebpf-cpu": scenario_ebpf_cpu,
    "timestamps-only": scenario_timestamps_only,
    "multi-resource": scenario_multi_resource,
    "unsymbolized": scenario_unsymbolized,
    "out-of-range": scenario_out_of_range,
    # http: garbage bytes; grpc: a well-formed request with a bad string index
    "malformed": None,
    "bad-strindex": scenario_bad_strindex,
    "garbage": scenario_garbage,
    "strindex": scenario_strindex,
}


# --------------------------------------------------------------------------------------
# Encoding


ID_KEYS = {"traceId", "spanId", "profileId"}


def _hex_ids(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ID_KEYS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                _hex_ids(v)
    elif isinstance(node, list):
        for v in node:
            _hex_ids(v)
    return node


def to_otlp_json(msg):
    d = json_format.MessageToDict(msg, preserving_proto_field_name=False,
                                  use_integers_for_enums=True)
    return _hex_ids(d)


def encode(transport, scenario, req):
    """-> (body bytes, content type). None req means garbage."""
    if transport == "http-json":
        if req is None:
            return GARBAGE_JSON, "application/json"
        return json.dumps(to_otlp_json(req), separators=(",", ":")).encode(), "application/json"
    if req is None:
        return GARBAGE_PROTO, "application/x-protobuf"
    return req.SerializeToString(), "application/x-protobuf"


# --------------------------------------------------------------------------------------
# Transports


def send_http(base_url, body, content_type, use_gzip, timeout):
    url = base_url.rstrip("/") + HTTP_PATH
    headers = {"Content-Type": content_type}
    if use_gzip:
        body = gzip_mod.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read(), True
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(), True
    except (urllib.error.URLError, OSError) as e:
        return None, None, "%s: %s" % (type(e).__name__, e), False


def decode_http_body(headers, raw):
    if isinstance(raw, str):
        return raw
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower() if headers else ""
    if (headers and (headers.get("Content-Encoding") or "").lower() == "gzip"):
        try:
            raw = gzip_mod.decompress(raw)
        except OSError:
            pass
    if ctype in ("application/x-protobuf", "application/protobuf"):
        resp = svc_pb.ExportProfilesServiceResponse()
        try:
            resp.ParseFromString(raw)
            return json_format.MessageToDict(resp)
        except Exception:  # noqa: BLE001 - report what came back
            pass
    if ctype == "application/json" or raw[:1] in (b"{", b"["):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def send_grpc(target, req, raw, use_gzip, timeout):
    import grpc  # noqa: PLC0415 - only the grpc transport needs it
    from opentelemetry.proto.collector.profiles.v1development import (  # noqa: PLC0415
        profiles_service_pb2_grpc as svc_grpc)

    compression = grpc.Compression.Gzip if use_gzip else grpc.Compression.NoCompression
    with grpc.insecure_channel(target) as channel:
        try:
            if raw is not None:
                call = channel.unary_unary(
                    GRPC_METHOD, request_serializer=lambda b: b,
                    response_deserializer=svc_pb.ExportProfilesServiceResponse.FromString)
                resp = call(raw, timeout=timeout, compression=compression)
            else:
                stub = svc_grpc.ProfilesServiceStub(channel)
                resp = stub.Export(req, timeout=timeout, compression=compression)
            return "OK", json_format.MessageToDict(resp), True
        except grpc.RpcError as e:
            code = e.code()
            worked = code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return code.name, e.details() or "", worked


# --------------------------------------------------------------------------------------


def build(scenario, transport, now_ns):
    if scenario == "malformed":
        if transport == "grpc":
            req, exp = scenario_bad_strindex(now_ns)
        else:
            req, exp = scenario_garbage(now_ns)
        exp["scenario"] = "malformed"
        return req, exp
    return SCENARIOS[scenario](now_ns)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("transport", nargs="?", choices=["grpc", "http-proto", "http-json"])
    ap.add_argument("target", nargs="?")
    ap.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    ap.add_argument("--gzip", action="store_true", help="gzip the body (grpc: per-call gzip)")
    ap.add_argument("--now-ns", type=int, default=None,
                    help="fix 'now' (profile time is now - 10 s); default: wall clock")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--dump", help="also write the uncompressed body sent to this file")
    ap.add_argument("--list", action="store_true", help="print the scenario names")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if not (args.transport and args.target and args.scenario):
        ap.print_usage(sys.stderr)
        return 2

    now_ns = args.now_ns if args.now_ns is not None else time.time_ns()
    req, expected = build(args.scenario, args.transport, now_ns)
    body, content_type = encode(args.transport, args.scenario, req)
    if args.dump:
        with open(args.dump, "wb") as f:
            f.write(body)

    if args.transport == "grpc":
        status, resp_body, worked = send_grpc(args.target, req, body if req is None else None,
                                              args.gzip, args.timeout)
    else:
        status, headers, raw, worked = send_http(args.target, body, content_type, args.gzip,
                                                 args.timeout)
        resp_body = decode_http_body(headers, raw)

    print(json.dumps({
        "status": status,
        "body": resp_body,
        "expected": expected,
        "transport": args.transport,
        "scenario": args.scenario,
        "gzip": args.gzip,
        "request_bytes": len(body),
    }, separators=(",", ":")), flush=True)
    return 0 if worked else 3


if __name__ == "__main__":
    sys.exit(main())
