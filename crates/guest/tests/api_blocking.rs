//! A slow attester (the Azure vTPM polls its report for seconds) must not
//! stall the local API: on a one-worker runtime, `/healthz` is answered
//! while `/aa/evidence` is still inside the attester.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use ward_guest::api::GuestApi;
use ward_guest::attester::AttesterError;
use ward_guest::{Attester, ClientOptions, KbsClient};
use ward_proto::Tee;

/// Blocks in `evidence` until the test releases it.
struct Gate {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Attester for Gate {
    fn tee(&self) -> Tee {
        Tee::new(Tee::SAMPLE)
    }

    fn evidence(&self, _report_data: &[u8]) -> Result<Value, AttesterError> {
        self.entered.lock().unwrap().send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        Ok(serde_json::json!({"svn": "1"}))
    }
}

#[test]
fn healthz_is_served_while_the_attester_blocks() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let client = KbsClient::new("http://127.0.0.1:9", gate, ClientOptions::default()).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = GuestApi::new(client).router();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    });
    let slow = std::thread::spawn(move || {
        reqwest::blocking::get(format!("http://{addr}/aa/evidence?runtime_data=abc"))
            .unwrap()
            .status()
    });
    entered_rx.recv().unwrap();
    // The attester holds its worker; the API must still answer (the timeout
    // only turns a stalled runtime into a failure instead of a hang).
    let healthz = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send();
    let ok = healthz.map(|r| r.status().is_success()).unwrap_or(false);
    release_tx.send(()).unwrap();
    assert!(ok, "/healthz was not answered while the attester blocked");
    assert!(slow.join().unwrap().is_success());
}
