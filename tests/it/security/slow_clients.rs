//! Slow clients cannot hold a server: half-sent headers are cut off at the header timeout,
//! and the server keeps answering meanwhile.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::kiln;

const SLOW_CLIENTS: usize = 1000;

/// This test process needs a descriptor per slow connection (the server raises its own limit).
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_headers_are_cut_off_while_ready_keeps_answering() {
    raise_open_files_limit();
    let server = kiln()
        .arg("--server.header-read-timeout=3s")
        .start()
        .await
        .unwrap();
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(server.http_addr()).await.unwrap();
        stream
            .write_all(b"POST /ingest?name=slow HTTP/1.1\r\nHost: kiln\r\nContent-Le")
            .await
            .unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();

    // The server answers others at once while every slow connection is open.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let started = Instant::now();
        let response = client.get(server.url("/ready")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "/ready took {took:?}");
    }

    // Each slow connection is closed by the server (end of stream or reset) once the header
    // timeout passes: the test waits for the server, not for a clock.
    let mut closed = 0;
    for mut stream in slow {
        let mut buffer = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    // A 408 answer before the close is fine too.
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(read.is_ok(), "a slow connection is still open 30 s later");
        closed += 1;
    }
    assert_eq!(closed, SLOW_CLIENTS);
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "closed after {elapsed:?}: before the 3 s header timeout"
    );
    let response = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the server keeps serving");
}
