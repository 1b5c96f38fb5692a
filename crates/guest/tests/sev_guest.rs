//! The `/dev/sev-guest` attester against a device double with the kernel's
//! SNP_GET_EXT_REPORT semantics: the certificate buffer too small → EIO with
//! exitinfo2 = INVALID_LEN and the needed length; firmware errors → EIO.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ward_guest::sev_guest::{
    ExtReportRequest, SevGuestAttester, SevGuestDevice, VMM_ERR_INVALID_LEN,
};
use ward_guest::Attester;
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_snp::evidence::{build_cert_table, parse_evidence, CertTableEntry};
use ward_snp::report::TcbParts;
use ward_snp::Product;

struct FakeDevice {
    sim: Arc<SnpSim>,
    calls: AtomicUsize,
    fw_error: Option<u64>,
}

impl std::fmt::Debug for FakeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeDevice")
    }
}

impl SevGuestDevice for FakeDevice {
    fn get_ext_report(&self, r: &mut ExtReportRequest) -> std::io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fw_error {
            r.exitinfo2 = e;
            return Err(std::io::Error::from_raw_os_error(libc_eio()));
        }
        // A chain large enough to need more than the attester's first guess.
        let table = build_cert_table(&[
            CertTableEntry {
                cert_type: "VCEK".into(),
                data: self.sim.vcek_der().to_vec(),
            },
            CertTableEntry {
                cert_type: "ASK".into(),
                data: vec![0x30; 20_000],
            },
        ]);
        let needed = table.len().div_ceil(4096) * 4096;
        if r.certs.len() < needed {
            r.exitinfo2 = VMM_ERR_INVALID_LEN;
            r.certs_len_needed = needed;
            return Err(std::io::Error::from_raw_os_error(libc_eio()));
        }
        r.certs[..table.len()].copy_from_slice(&table);
        let mut p = SnpReportParams::default();
        p.report_data.copy_from_slice(&r.user_data);
        let report = self.sim.report(&p).unwrap();
        let mut resp = vec![0u8; 4000];
        resp[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
        resp[32..32 + report.len()].copy_from_slice(&report);
        r.response = resp;
        r.exitinfo2 = 0;
        Ok(())
    }
}

fn libc_eio() -> i32 {
    5
}

fn sim() -> Arc<SnpSim> {
    Arc::new(
        SnpSim::generate(
            Product::Milan,
            TcbParts {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            },
            1_795_400_000,
        )
        .unwrap(),
    )
}

#[test]
fn retries_with_the_needed_certificate_buffer_and_builds_evidence() {
    let sim = sim();
    let dev = Arc::new(FakeDevice {
        sim: sim.clone(),
        calls: AtomicUsize::new(0),
        fw_error: None,
    });
    let a = SevGuestAttester::new(Box::new(FakeDeviceRef(dev.clone())));
    let rd: Vec<u8> = (0..48).collect();
    let ev = a.evidence(&rd).unwrap();
    assert_eq!(
        dev.calls.load(Ordering::SeqCst),
        2,
        "one EIO/INVALID_LEN, then the report"
    );
    let parsed = parse_evidence(&ev).unwrap();
    assert_eq!(&parsed.report.report_data()[..48], rd.as_slice());
    assert_eq!(parsed.cert("VCEK").unwrap(), sim.vcek_der());
    assert_eq!(a.init_data_field().unwrap().unwrap(), vec![0u8; 32]);
}

#[test]
fn firmware_errors_are_reported_clearly() {
    let dev = Arc::new(FakeDevice {
        sim: sim(),
        calls: AtomicUsize::new(0),
        fw_error: Some(0x16),
    });
    let a = SevGuestAttester::new(Box::new(FakeDeviceRef(dev)));
    let e = a.evidence(&[0; 48]).unwrap_err().to_string();
    assert!(
        e.contains("SNP_GET_EXT_REPORT failed") && e.contains("0x16"),
        "{e}"
    );
    assert!(a.evidence(&[0; 65]).is_err());
}

/// Shares one fake device between the attester and the test.
#[derive(Debug)]
struct FakeDeviceRef(Arc<FakeDevice>);

impl SevGuestDevice for FakeDeviceRef {
    fn get_ext_report(&self, r: &mut ExtReportRequest) -> std::io::Result<()> {
        self.0.get_ext_report(r)
    }
}
