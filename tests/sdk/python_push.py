"""Push CPU profiles to a Kiln server with the real Pyroscope Python SDK.

Usage: python_push.py [SERVER_URL] [APP_NAME] [SECONDS]
  (or env KILN_URL, KILN_APP, KILN_SDK_SECONDS; defaults below)

Needs `pip install -r tests/sdk/requirements.txt` (pyroscope-io). The SDK
(pyroscope-rs inside) pushes to POST /push.v1.PusherService/Push as Connect
application/proto, with the service_name label set to APP_NAME.
"""
import logging
import os
import sys
import time

import pyroscope

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KILN_URL", "http://127.0.0.1:4040")
app = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("KILN_APP", "kiln-sdk-python")
seconds = float(sys.argv[3] if len(sys.argv) > 3 else os.environ.get("KILN_SDK_SECONDS", "6"))


def kiln_sdk_python_busy_work(deadline):
    # Distinctive name the test looks for in the flame graph.
    x = 0
    while time.monotonic() < deadline:
        for i in range(10_000):
            x = (x * 31 + i) % 1_000_003
    return x


# Let the SDK print failed uploads (connection errors, non-2xx) to stderr;
# it never raises for them, so the caller must check the server's side.
logging.basicConfig(level=logging.WARNING)
pyroscope.configure(
    application_name=app,
    server_address=url,
    sample_rate=100,
    upload_interval=1,  # seconds between uploads (default 10)
    tags={"kiln_test": "python"},
    enable_logging=True,
)
kiln_sdk_python_busy_work(time.monotonic() + seconds)
# shutdown() stops the sampler and uploads the last, partial interval.
ok = pyroscope.shutdown()
print(f"python_push: app={app} url={url} shutdown={ok}", flush=True)
sys.exit(0 if ok else 1)
