//! Issue 18, item 4: with a KBS that accepts connections and never answers,
//! `/cdh/resource` used to answer 502 only after 60–90 s, and
//! `/aa/evidence`, which needs no KBS, waited behind the same client lock.
//! Now every KBS call has an overall deadline (504), calls that need no KBS
//! never wait on it, concurrent calls share one attestation, and unknown
//! paths and methods get JSON errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_guest::api::GuestApi;
use ward_guest::{ClientOptions, KbsClient, SampleAttester};

/// A "KBS" that accepts every connection, reads, and never answers; counts
/// connections.
async fn silent_kbs() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (url, accepted)
}

async fn guest_api(kbs: &str, deadline: Duration) -> String {
    let client = KbsClient::new(
        kbs,
        Arc::new(SampleAttester::default()),
        ClientOptions::default(),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let api = GuestApi::new(client).with_deadline(deadline);
    tokio::spawn(ward_guest::api::serve(
        l,
        api,
        ward_guest::api::limits(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kbs_costs_each_call_its_deadline_and_blocks_nothing_else() {
    let (kbs, accepted) = silent_kbs().await;
    let deadline = Duration::from_millis(800);
    let api = guest_api(&kbs, deadline).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let start = Instant::now();
    // Three resource calls at once, and an evidence call while they wait.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{api}/cdh/resource/default/k/v"));
            tokio::spawn(async move {
                let r = http.get(url).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap(),
                    Instant::now(),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ev = http
        .get(format!("{api}/aa/evidence?runtime_data=abc"))
        .send()
        .await
        .unwrap();
    let ev_at = start.elapsed();
    assert_eq!(ev.status().as_u16(), 200);
    assert!(ev.json::<Value>().await.unwrap()["report_data"].is_string());
    assert!(ev_at < deadline, "evidence waited on the KBS: {ev_at:?}");
    for c in calls {
        let (status, body, at) = c.await.unwrap();
        assert_eq!(status, 504, "{body}");
        assert_eq!(body["error"], "KbsTimeout");
        assert!(body["detail"].as_str().unwrap().contains("did not answer"));
        // Each within its own deadline, not one after another.
        let took = at - start;
        assert!(took >= deadline && took < deadline * 4, "{took:?}");
    }
    // The three calls shared one attestation: one connection to the KBS.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_json_errors() {
    let api = guest_api("http://127.0.0.1:9", Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{api}/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "NotFound");
    let r = http.delete(format!("{api}/aa/token")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "MethodNotAllowed"
    );
}
