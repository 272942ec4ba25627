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
        // A 408 answer before the close is fine too.
        read_to_close(&mut stream, Duration::from_secs(30))
            .await
            .expect("a slow connection is still open 30 s later");
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

/// Reads from `stream` until the server closes it or `limit` passes; what it sent.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_idle_connections_and_bytes_in_flight_are_bounded() {
    let server = kiln()
        .args([
            "--server.body-read-timeout=5s",
            "--server.idle-timeout=2s",
            "--server.max-inflight-bytes=1MiB",
        ])
        .start()
        .await
        .unwrap();
    let addr = server.http_addr().to_string();

    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /ready HTTP/1.1\r\nHost: kiln\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let sent = read_to_close(&mut idle, Duration::from_secs(30))
        .await
        .expect("an idle connection is still open 30 s later");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    assert!(answered.elapsed() >= Duration::from_millis(1500));

    // A body that stops half-way holds its bytes of the budget (all of it here) until the body
    // timeout answers 408; meanwhile another body waits for room and gets 503.
    let mut holder = TcpStream::connect(&addr).await.unwrap();
    holder
        .write_all(
            b"POST /ingest?name=slow&format=pprof HTTP/1.1\r\nHost: kiln\r\nContent-Length: 1048576\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let other = || {
        client
            .post(server.url("/ingest?name=other&format=pprof"))
            .body(vec![0u8; 600 << 10])
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Until the server has read the holder's head, the other body may still find room.
        let response = other().await.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let text = response.text().await.unwrap();
            assert!(text.contains("max-inflight-bytes"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused for bytes in flight"
        );
    }
    let sent = read_to_close(&mut holder, Duration::from_secs(30))
        .await
        .expect("a stalled body is still open 30 s later");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    // Its bytes are free again: the other body is read (and refused as no pprof).
    assert_eq!(other().await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_until_one_frees_its_place() {
    let server = kiln()
        .arg("--server.max-connections=3")
        .start()
        .await
        .unwrap();
    let addr = server.http_addr().to_string();
    // Three connections that send nothing hold every place (for up to the header timeout).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let ask = || async {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        // A write to a connection the server already closed may fail: that is the refusal too.
        let _ = stream
            .write_all(b"GET /ready HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n")
            .await;
        read_to_close(&mut stream, Duration::from_secs(30))
            .await
            .expect("the server answers or closes")
    };
    // The readiness check's keep-alive connection may still hold a place when the three are
    // opened, and free it a moment later: then a fourth is served once, and one more held
    // connection fills the place. A server that does not limit keeps serving, until the deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refused = ask().await;
        if refused.is_empty() {
            break;
        }
        assert!(refused.starts_with("HTTP/1.1 200"), "{refused}");
        assert!(
            Instant::now() < deadline,
            "connections past the limit were served: {refused}"
        );
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Once one place is free (the last held connection is one that holds a place: it was
    // opened while places were full or right after one freed), connections are served again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = ask().await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.is_empty(), "{answer}");
        assert!(
            Instant::now() < deadline,
            "no place freed by a closed connection"
        );
    }
}
