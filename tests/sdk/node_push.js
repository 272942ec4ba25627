// Push profiles to a Kiln server with the real Pyroscope Node.js SDK.
//
// Usage: node node_push.js [SERVER_URL] [APP_NAME] [SECONDS]
//   (or env KILN_URL, KILN_APP, KILN_SDK_SECONDS; defaults below)
//
// Needs `npm ci` in tests/sdk (package.json pins @pyroscope/nodejs). The SDK
// POSTs each profile to /ingest?name=APP{tags}&format=pprof&spyName=nodespy
// &from=..&until=.. as application/octet-stream (a gzipped pprof body):
// one wall profile and one heap profile per flush interval.
'use strict';

// The SDK reports failed uploads (fetch errors, non-2xx) only through the
// `debug` logger 'pyroscope', and never throws for them: print them to stderr
// (debug reads DEBUG when loaded). The caller must check the server's side.
process.env.DEBUG = process.env.DEBUG || 'pyroscope';
const Pyroscope = require('@pyroscope/nodejs');

const url = process.argv[2] || process.env.KILN_URL || 'http://127.0.0.1:4040';
const app = process.argv[3] || process.env.KILN_APP || 'kiln-sdk-node';
const seconds = Number(process.argv[4] || process.env.KILN_SDK_SECONDS || 6);

// Distinctive name the test looks for in the flame graph. Runs for ~sliceMs
// of CPU and returns, so the caller can yield to the event loop in between.
function kilnSdkNodeBusyWork(sliceMs) {
  const end = Date.now() + sliceMs;
  let x = 0;
  while (Date.now() < end) {
    for (let i = 0; i < 10000; i++) x = (x * 31 + i) % 1000003;
  }
  return x;
}

async function main() {
  Pyroscope.init({
    appName: app,
    serverAddress: url,
    flushIntervalMs: 1000, // upload every second (default 60 s)
    tags: { kiln_test: 'node' },
    // Wall profiler at 100 Hz; also record CPU time per sample.
    wall: { samplingIntervalMicros: 10000, collectCpuTime: true },
  });
  Pyroscope.start(); // wall + heap profilers

  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    kilnSdkNodeBusyWork(50);
    // Yield so the SDK's flush timer (setTimeout) can fire and upload.
    await new Promise((resolve) => setImmediate(resolve));
  }

  // stop() waits for any in-flight upload, then uploads the last profile.
  await Pyroscope.stop();
  console.log(`node_push: app=${app} url=${url} stopped`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error('node_push failed:', err);
    process.exit(1);
  },
);
