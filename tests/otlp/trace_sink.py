"""An OTLP/gRPC trace receiver for tests: Kiln's own traces land here.

Usage: trace_sink.py PORT OUT_FILE

Listens on 127.0.0.1:PORT and appends one JSON object per received span to OUT_FILE:
{"trace_id", "span_id", "parent_span_id" (hex, "" for a root), "name", "target"
(the resource's kiln.target attribute), "attributes" (string values)}. Runs until killed.
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def value_text(value):
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: value_text(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "target": resource.get("kiln.target", ""),
                        "attributes": {a.key: value_text(a.value) for a in span.attributes},
                    }))
        with self.lock, open(self.path, "a") as out:
            for line in lines:
                out.write(line + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(sys.argv[2]), server)
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
