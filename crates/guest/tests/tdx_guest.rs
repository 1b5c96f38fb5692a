//! The `/dev/tdx_guest` + QGS attester against a TDREPORT double and a QGS
//! stand-in on a Unix socket that speaks the QGS message protocol and
//! quotes with the DCAP simulator; the evidence is verified by ward's `tdx`
//! verifier.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use ward_guest::tdx_guest::{QgsAddress, TdxGuestAttester, TdxGuestDevice};
use ward_guest::Attester;
use ward_sim::tdx::{DcapSim, TdParams};
use ward_verifier::dcap::DcapVerifier;

const NOW: i64 = 1_795_400_000;

#[derive(Debug)]
struct FakeTd {
    mr_td: [u8; 48],
    mr_config_id: [u8; 48],
}

impl TdxGuestDevice for FakeTd {
    fn get_report(&self, report_data: &[u8; 64]) -> std::io::Result<Vec<u8>> {
        let mut r = vec![0u8; 1024];
        r[0] = 0x81;
        r[128..192].copy_from_slice(report_data);
        r[528..576].copy_from_slice(&self.mr_td);
        r[576..624].copy_from_slice(&self.mr_config_id);
        Ok(r)
    }
}

/// A QGS on a Unix socket: checks the GET_QUOTE_REQ framing and answers
/// with a quote of the TDREPORT (or with `error_code` when non-zero).
fn qgs(dir: &std::path::Path, dcap: Arc<DcapSim>, error_code: u32) -> QgsAddress {
    let path = dir.join("qgs.socket");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let mut s = conn.unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut m = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut m).unwrap();
            let le = |at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
            assert_eq!(
                (u16::from_le_bytes([m[0], m[1]]), le(4)),
                (1, 0),
                "GET_QUOTE_REQ v1"
            );
            assert_eq!(le(8) as usize, m.len(), "size covers the whole message");
            assert_eq!((le(16), le(20)), (1024, 0), "report size, no id list");
            let report = &m[24..];
            let mut p = TdParams::default();
            p.report_data.copy_from_slice(&report[128..192]);
            p.mr_td.copy_from_slice(&report[528..576]);
            p.mr_config_id.copy_from_slice(&report[576..624]);
            let quote = if error_code == 0 {
                dcap.tdx_quote(&p).unwrap()
            } else {
                Vec::new()
            };
            let size = (24 + quote.len()) as u32;
            let mut out = size.to_be_bytes().to_vec();
            for v in [1u16.to_le_bytes(), 0u16.to_le_bytes()] {
                out.extend_from_slice(&v);
            }
            for v in [1, size, error_code, 0, quote.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&quote);
            s.write_all(&out).unwrap();
        }
    });
    QgsAddress::Unix(path)
}

#[test]
fn quotes_from_the_qgs_verify_and_bind_report_data_and_mrconfigid() {
    let dir = tempfile::tempdir().unwrap();
    let dcap = Arc::new(DcapSim::generate(NOW - 86_400, false).unwrap());
    let td = FakeTd {
        mr_td: [0x4d; 48],
        mr_config_id: [0xc1; 48],
    };
    let a = TdxGuestAttester::new(Box::new(td), qgs(dir.path(), dcap.clone(), 0));
    assert_eq!(a.tee().as_str(), "tdx");
    let rd: Vec<u8> = (0..48).collect();
    let ev = a.evidence(&rd).unwrap();
    let v = DcapVerifier::tdx(Some(common::sim_collateral(&dcap, NOW)))
        .with_simulated_roots(vec![dcap.root_fingerprint()]);
    let claims = common::verify(&v, ev, NOW);
    assert_eq!(&claims.report_data[..48], rd.as_slice());
    assert!(claims.claims.to_string().contains(&"4d".repeat(48)), "MRTD");
    assert_eq!(a.init_data_field().unwrap().unwrap(), vec![0xc1; 48]);
}

#[test]
fn qgs_failures_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dcap = Arc::new(DcapSim::generate(NOW - 86_400, false).unwrap());
    let td = || {
        Box::new(FakeTd {
            mr_td: [0; 48],
            mr_config_id: [0; 48],
        })
    };
    let a = TdxGuestAttester::new(td(), qgs(dir.path(), dcap, 0x0001_1001));
    let e = a.evidence(&[1; 48]).unwrap_err().to_string();
    assert!(e.contains("QGS error code 0x11001"), "{e}");
    let a = TdxGuestAttester::new(td(), QgsAddress::Unix(dir.path().join("absent")));
    let e = a.evidence(&[1; 48]).unwrap_err().to_string();
    assert!(e.contains("cannot reach the QGS"), "{e}");
    assert!(a.evidence(&[1; 65]).is_err());
}
