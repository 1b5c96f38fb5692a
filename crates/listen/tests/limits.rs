//! The listener's bounds against misbehaving peers on a real socket
//! (issue 18, item 1): silent sockets, HTTP/2 prefaces with no request,
//! trickled bodies, idle keep-alive connections, the connection cap, and
//! per-thread upkeep. Deadlines here are short; the assertions only bound
//! when a connection is closed, generously, never how fast anything runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use ward_listen::{is_body_timeout, Limits, ListenerMetrics, Options, Upkeep, Workers};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|b: Result<Bytes, BytesRejection>| async move {
                match b {
                    Ok(b) => (StatusCode::OK, b.to_vec()),
                    Err(e) if is_body_timeout(&e) => {
                        (StatusCode::REQUEST_TIMEOUT, b"body timeout".to_vec())
                    }
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
                }
            }),
        )
}

struct Server {
    addr: std::net::SocketAddr,
    metrics: ListenerMetrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Server {
    async fn start(limits: Limits, workers: Workers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ListenerMetrics::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = Options {
            limits,
            workers: Some(workers),
            metrics: metrics.clone(),
            ..Default::default()
        };
        let task = tokio::spawn(ward_listen::serve(listener, app(), opts, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: 64,
        first_request: MS(300),
        idle: MS(400),
        body: MS(500),
        http2_keepalive: MS(300),
    }
}

/// Read until the server closes the connection; what arrived, and when
/// (bounded at 10 s, which fails the test).
async fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Instant::now()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after 10 s"),
        }
    }
}

async fn get_healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = until_closed(&mut s).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_silent_sockets_and_bare_http2_prefaces_after_the_first_request_deadline() {
    let server = Server::start(limits(), Workers::Threads(2)).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: a complete HTTP/2 start, but no request.
    let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    let sends: [(&str, Vec<u8>); 4] = [
        ("nothing", vec![]),
        ("partial HTTP/2 preface", preface[..10].to_vec()),
        ("full HTTP/2 preface", preface.to_vec()),
        (
            "preface and SETTINGS",
            [preface.as_slice(), &settings].concat(),
        ),
    ];
    for (what, bytes) in sends {
        let start = Instant::now();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let (_, closed) = until_closed(&mut s).await;
        let after = closed - start;
        assert!(
            after >= MS(250) && after < Duration::from_secs(5),
            "{what}: closed after {after:?}"
        );
    }
    assert_eq!(server.metrics.closed_for("first_request_timeout"), 4);
    // The server still answers.
    assert!(get_healthz(server.addr).await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_refused_once_the_body_deadline_passes() {
    let server = Server::start(limits(), Workers::Threads(1)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if writer.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(MS(100)).await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&out).contains("body timeout") {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(got.is_ok(), "no answer: {}", String::from_utf8_lossy(&out));
    let after = start.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        after >= MS(450) && after < Duration::from_secs(5),
        "{after:?}"
    );
    trickle.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_time() {
    let server = Server::start(limits(), Workers::Current).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // Two requests, each within the idle time of the previous one, keep
    // the connection; then silence closes it.
    let mut answered = Instant::now();
    for _ in 0..2 {
        tokio::time::sleep(MS(200)).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        answered = Instant::now();
    }
    let (_, closed) = until_closed(&mut s).await;
    let idle = closed - answered;
    assert!(idle >= MS(350) && idle < Duration::from_secs(5), "{idle:?}");
    assert_eq!(server.metrics.closed_for("idle_timeout"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room_for_a_new_one() {
    let l = Limits {
        max_connections: 4,
        first_request: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        ..limits()
    };
    let server = Server::start(l, Workers::Threads(2)).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Long before any deadline, a real request is answered.
    let answer = tokio::time::timeout(Duration::from_secs(5), get_healthz(server.addr))
        .await
        .expect("healthz answered while the cap is held by idle sockets");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(server.metrics.closed_for("evicted") >= 5);
    assert!(server.metrics.open() <= 4, "{}", server.metrics.open());
    // The first idle sockets were the ones closed.
    let (_, _) = until_closed(&mut idle[0]).await;
    drop(idle);
    server.stop().await;
}

#[tokio::test]
async fn upkeep_runs_periodically_on_every_worker_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runs = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let seen = runs.clone();
    let upkeep = Upkeep {
        every: MS(20),
        run: Arc::new(move || {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            *seen.lock().unwrap().entry(thread).or_default() += 1;
        }),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = Options {
        workers: Some(Workers::Threads(2)),
        upkeep: Some(upkeep),
        ..Default::default()
    };
    let server = tokio::spawn(ward_listen::serve(listener, Router::new(), opts, async {
        let _ = stopped.await;
    }));
    let twice_each = || {
        let r = runs.lock().unwrap();
        r.len() == 2 && r.values().all(|n| *n >= 2)
    };
    for _ in 0..500 {
        if twice_each() {
            break;
        }
        tokio::time::sleep(MS(10)).await;
    }
    let names: Vec<String> = runs.lock().unwrap().keys().cloned().collect();
    assert_eq!(names, ["ward-worker-0", "ward-worker-1"]);
    assert!(twice_each(), "{:?}", runs.lock().unwrap());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
