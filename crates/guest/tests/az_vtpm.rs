//! The Azure vTPM attester against the simulated vTPM (which answers the
//! TPM 2.0 commands byte for byte, with a lagging HCL report refresh) and
//! an HTTP stand-in for the instance metadata service; the evidence is
//! checked by ward's `az-snp-vtpm` verifier.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use ward_guest::az_vtpm::{AzVtpmAttester, HttpImds, Imds, Tpm, TpmDevice};
use ward_guest::Attester;
use ward_sim::az::{AzHardware, AzVtpmSim};
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_sim::tdx::{DcapSim, TdParams};
use ward_snp::report::TcbParts;
use ward_snp::Product;
use ward_verifier::az_snp_vtpm::AzSnpVtpmVerifier;
use ward_verifier::az_tdx_vtpm::AzTdxVtpmVerifier;
use ward_verifier::snp::SnpVerifier;
use ward_verifier::InitDataBinding;

const NOW: i64 = 1_795_400_000;

struct SimDevice(Arc<AzVtpmSim>);

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimDevice")
    }
}

impl TpmDevice for SimDevice {
    fn transact(&self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(self.0.transact(command))
    }
}

fn snp_vtpm(stale_reads: usize, init_digest: Option<&[u8]>) -> Arc<AzVtpmSim> {
    let sim = SnpSim::generate(
        Product::Genoa,
        TcbParts {
            fmc: None,
            bootloader: 9,
            tee: 0,
            snp: 21,
            microcode: 84,
        },
        NOW - 86_400,
    )
    .unwrap();
    let params = SnpReportParams {
        measurement: [0x3c; 48],
        ..Default::default()
    };
    let mut v = AzVtpmSim::new(AzHardware::Snp(Box::new(sim), params), init_digest).unwrap();
    v.stale_reads = stale_reads;
    Arc::new(v)
}

/// Serve `app` on 127.0.0.1 from its own runtime thread (the attester
/// blocks, as on a VM); returns the base URL.
fn serve(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

fn metadata_header(h: &HeaderMap) -> Result<(), StatusCode> {
    match h.get("metadata").and_then(|v| v.to_str().ok()) {
        Some("true") => Ok(()),
        _ => Err(StatusCode::BAD_REQUEST),
    }
}

/// An IMDS stand-in that, like Azure's, answers only requests carrying
/// `Metadata: true`: the VCEK certification endpoint.
fn imds(vcek_der: Vec<u8>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&vcek_der);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    serve(axum::Router::new().route(
        "/metadata/THIM/amd/certification",
        get(move |h: HeaderMap| {
            let pem = pem.clone();
            async move {
                metadata_header(&h)?;
                Ok::<_, StatusCode>(axum::Json(serde_json::json!({
                    "vcekCert": pem, "certificateChain": "", "tcbm": "1500000000000009"
                })))
            }
        }),
    ))
}

fn attester(vtpm: &Arc<AzVtpmSim>) -> AzVtpmAttester {
    let base = imds(vtpm.snp().unwrap().vcek_der().to_vec());
    let mut a = AzVtpmAttester::new(
        Tpm::new(Box::new(SimDevice(vtpm.clone()))),
        Box::new(HttpImds { base }),
    )
    .unwrap();
    a.poll_interval = Duration::from_millis(5);
    a
}

fn verifier(vtpm: &AzVtpmSim) -> AzSnpVtpmVerifier {
    let sim = vtpm.snp().unwrap();
    let bundle = vec![("sim".to_string(), sim.cert_chain_pem().into_bytes())];
    AzSnpVtpmVerifier::new(
        SnpVerifier::with_simulated_roots(&bundle, &[sim.ark_fingerprint()]).unwrap(),
    )
}

#[test]
fn evidence_from_the_vtpm_verifies_and_binds_the_report_data() {
    let digest = [0x5au8; 32];
    let vtpm = snp_vtpm(2, Some(&digest));
    let a = attester(&vtpm);
    assert_eq!(a.tee().as_str(), "az-snp-vtpm");
    let v = verifier(&vtpm);
    for seed in [1u8, 2] {
        let rd: Vec<u8> = (0..48).map(|i| i ^ seed).collect();
        let ev = a.evidence(&rd).unwrap();
        assert_eq!(ev["version"], 2);
        assert_eq!(ev["tpm_quote"]["pcrs"].as_array().unwrap().len(), 24);
        // The HCL refresh lags two reads: evidence built from a stale report
        // would fail the user-data check below.
        let claims = common::verify(&v, ev, NOW);
        assert_eq!(claims.report_data, rd);
        assert_eq!(claims.claims["simulated"], true, "{}", claims.claims);
        let Some(InitDataBinding::TpmPcr { index, value }) = claims.init_data else {
            panic!("PCR 8 binding expected");
        };
        assert_eq!((index, value), (8, vtpm.pcrs()[8]));
        assert!(InitDataBinding::TpmPcr { index, value }.matches(&digest, |_| vec![]));
    }
    assert_eq!(a.init_data_pcr().unwrap(), Some(vtpm.pcrs()[8]));
}

#[test]
fn a_report_that_never_refreshes_is_an_error_not_stale_evidence() {
    let vtpm = snp_vtpm(usize::MAX, None);
    let mut a = attester(&vtpm);
    a.refresh_timeout = Duration::from_millis(30);
    let e = a.evidence(&[7; 48]).unwrap_err().to_string();
    assert!(e.contains("did not pick up the new user-data"), "{e}");
}

/// A TPM without Azure's HCL report index, and one that answers garbage.
#[derive(Debug)]
struct PlainTpm(Vec<u8>);

impl TpmDevice for PlainTpm {
    fn transact(&self, _command: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }
}

#[test]
fn other_tpms_and_garbage_answers_are_named() {
    // TPM_RC_HANDLE for handle 1, bare header.
    let handle_error = vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b];
    let e = AzVtpmAttester::new(
        Tpm::new(Box::new(PlainTpm(handle_error))),
        Box::new(HttpImds {
            base: "http://127.0.0.1:9".into(),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("0x01400001") && e.contains("not defined"), "{e}");
    let e = AzVtpmAttester::new(
        Tpm::new(Box::new(PlainTpm(b"garbage!".to_vec()))),
        Box::new(HttpImds {
            base: "http://127.0.0.1:9".into(),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("TPM2_NV_ReadPublic") && e.contains("TPM2 response"),
        "{e}"
    );
}

#[test]
fn imds_requires_a_well_formed_certificate() {
    let e = HttpImds {
        base: imds(b"not a certificate".to_vec()),
    }
    .vcek()
    .unwrap_err()
    .to_string();
    assert!(e.contains("vcekCert"), "{e}");
    let e = HttpImds {
        base: "http://127.0.0.1:9".into(),
    }
    .vcek()
    .unwrap_err()
    .to_string();
    assert!(e.contains("IMDS http://127.0.0.1:9"), "{e}");
}

/// The TD quote endpoint: the simulated quoting enclave quotes the TDREPORT
/// it is given (report_data and MRTD carried over).
fn tdx_imds(dcap: Arc<DcapSim>) -> String {
    serve(axum::Router::new().route(
        "/acc/tdquote",
        post(
            move |h: HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
                let dcap = dcap.clone();
                async move {
                    use base64::Engine;
                    metadata_header(&h)?;
                    let report = base64::engine::general_purpose::URL_SAFE
                        .decode(body["report"].as_str().unwrap_or_default())
                        .map_err(|_| StatusCode::BAD_REQUEST)?;
                    if report.len() != 1024 {
                        return Err(StatusCode::BAD_REQUEST);
                    }
                    let mut p = TdParams::default();
                    p.report_data.copy_from_slice(&report[128..192]);
                    p.mr_td.copy_from_slice(&report[528..576]);
                    let q = dcap.tdx_quote(&p).unwrap();
                    Ok(axum::Json(serde_json::json!({
                        "quote": base64::engine::general_purpose::URL_SAFE.encode(q)
                    })))
                }
            },
        ),
    ))
}

#[test]
fn tdx_vms_get_their_td_quote_from_imds_and_verify() {
    let dcap = Arc::new(DcapSim::generate(NOW - 86_400, false).unwrap());
    let vtpm = Arc::new(AzVtpmSim::new(AzHardware::Tdx { mr_td: [0x7d; 48] }, None).unwrap());
    let mut a = AzVtpmAttester::new(
        Tpm::new(Box::new(SimDevice(vtpm.clone()))),
        Box::new(HttpImds {
            base: tdx_imds(dcap.clone()),
        }),
    )
    .unwrap();
    a.poll_interval = Duration::from_millis(5);
    assert_eq!(a.tee().as_str(), "az-tdx-vtpm");
    let rd: Vec<u8> = (100..148).collect();
    let ev = a.evidence(&rd).unwrap();
    assert!(ev["td_quote"].is_string() && ev.get("vcek").is_none());
    let v = AzTdxVtpmVerifier::new(Some(common::sim_collateral(&dcap, NOW)))
        .with_simulated_roots(vec![dcap.root_fingerprint()]);
    let claims = common::verify(&v, ev, NOW);
    assert_eq!(claims.report_data, rd);
    assert!(
        claims.claims.to_string().contains(&"7d".repeat(48)),
        "MRTD claimed"
    );
}
