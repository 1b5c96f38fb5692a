//! The configfs-tsm attester against a directory tree that behaves like the
//! kernel's: a thread plays configfs (attributes appear on mkdir,
//! `generation` counts writes, `outblob`/`auxblob` are produced by the SNP
//! simulator for the written `inblob`). Covers a concurrent writer (the
//! generation race) and an unsupported provider.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ward_guest::tsm::{Provider, TsmAttester};
use ward_guest::Attester;
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_snp::evidence::{build_cert_table, parse_evidence, CertTableEntry};
use ward_snp::report::TcbParts;
use ward_snp::Product;

/// A configfs-tsm stand-in. `race` entries see one foreign write after
/// their outblob is produced.
struct FakeTsm {
    root: PathBuf,
    stop: Arc<AtomicBool>,
    races_left: Arc<AtomicUsize>,
}

/// Replace a file whole, as a configfs attribute reads: never seen empty
/// or half-written (a plain `write` truncates first).
fn whole(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl FakeTsm {
    fn start(root: &Path, provider: &'static str, sim: Option<Arc<SnpSim>>, races: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let races_left = Arc::new(AtomicUsize::new(races));
        let (r, st, rl) = (root.to_path_buf(), stop.clone(), races_left.clone());
        std::thread::spawn(move || {
            let mut seen: std::collections::HashMap<PathBuf, Vec<u8>> = Default::default();
            while !st.load(Ordering::SeqCst) {
                for e in std::fs::read_dir(&r).unwrap().flatten() {
                    let d = e.path();
                    if !d.join("provider").exists() {
                        whole(&d.join("generation"), b"0\n");
                        std::fs::write(d.join("provider"), format!("{provider}\n")).unwrap();
                        continue;
                    }
                    let Ok(inblob) = std::fs::read(d.join("inblob")) else {
                        continue;
                    };
                    // A plain file can be read while the attester is still
                    // writing it (configfs takes the write whole).
                    if inblob.len() != 64 || seen.get(&d) == Some(&inblob) {
                        continue;
                    }
                    seen.insert(d.clone(), inblob.clone());
                    if let Some(sim) = &sim {
                        let mut p = SnpReportParams::default();
                        p.report_data.copy_from_slice(&inblob);
                        std::fs::write(d.join("outblob"), sim.report(&p).unwrap()).unwrap();
                        let table = build_cert_table(&[CertTableEntry {
                            cert_type: "VCEK".into(),
                            data: sim.vcek_der().to_vec(),
                        }]);
                        std::fs::write(d.join("auxblob"), table).unwrap();
                    } else {
                        std::fs::write(d.join("outblob"), b"QUOTE").unwrap();
                    }
                    let gen = if rl
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        2 // our write and a foreign one
                    } else {
                        1
                    };
                    whole(&d.join("generation"), format!("{gen}\n").as_bytes());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Self {
            root: root.to_path_buf(),
            stop,
            races_left,
        }
    }
}

impl Drop for FakeTsm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn sim() -> Arc<SnpSim> {
    Arc::new(
        SnpSim::generate(
            Product::Genoa,
            TcbParts {
                fmc: None,
                bootloader: 9,
                tee: 0,
                snp: 21,
                microcode: 84,
            },
            1_795_400_000,
        )
        .unwrap(),
    )
}

#[test]
fn snp_report_through_configfs_tsm_with_the_host_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let fake = FakeTsm::start(dir.path(), "sev_guest", Some(sim.clone()), 0);
    let a = TsmAttester::detect(&fake.root).unwrap().unwrap();
    assert_eq!(a.provider(), Provider::SevGuest);
    assert_eq!(a.tee().as_str(), "snp");

    let rd: Vec<u8> = (0..48).collect();
    let ev = a.evidence(&rd).unwrap();
    let parsed = parse_evidence(&ev).unwrap();
    assert_eq!(&parsed.report.report_data()[..48], rd.as_slice());
    assert_eq!(&parsed.report.report_data()[48..], &[0u8; 16]);
    assert_eq!(parsed.cert("VCEK").unwrap(), sim.vcek_der());
    // The JSON turns back into exactly the bytes the "hardware" returned
    // (a plain directory keeps the entry's files after rmdir fails).
    let outblobs: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("outblob")).ok())
        .collect();
    assert!(outblobs.contains(&parsed.report.as_bytes().to_vec()));
    drop(fake);
}

#[test]
fn a_concurrent_writer_is_detected_and_the_request_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTsm::start(dir.path(), "sev_guest", Some(sim()), 1);
    let a = TsmAttester::detect(&fake.root).unwrap().unwrap();
    let ev = a.evidence(&[7u8; 48]).unwrap();
    assert_eq!(
        fake.races_left.load(Ordering::SeqCst),
        0,
        "the race happened"
    );
    let parsed = parse_evidence(&ev).unwrap();
    assert_eq!(&parsed.report.report_data()[..48], &[7u8; 48]);

    // Every attempt raced: a clear error, not a report of unknown binding.
    let dir2 = tempfile::tempdir().unwrap();
    let fake2 = FakeTsm::start(dir2.path(), "sev_guest", Some(sim()), 100);
    let a2 = TsmAttester::detect(&fake2.root).unwrap().unwrap();
    let e = a2.evidence(&[1u8; 48]).unwrap_err().to_string();
    assert!(e.contains("modified concurrently"), "{e}");
}

#[test]
fn tdx_quotes_and_unsupported_providers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTsm::start(dir.path(), "tdx_guest", None, 0);
    let a = TsmAttester::detect(&fake.root).unwrap().unwrap();
    assert_eq!(a.tee().as_str(), "tdx");
    let ev = a.evidence(&[1u8; 48]).unwrap();
    assert_eq!(ev["quote"], ward_proto::b64::std_encode(b"QUOTE"));

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTsm::start(dir.path(), "arm_cca_guest", None, 0);
    let e = TsmAttester::detect(&fake.root).unwrap_err().to_string();
    assert!(
        e.contains("unsupported configfs-tsm provider \"arm_cca_guest\""),
        "{e}"
    );

    // No configfs-tsm at all: not detected, no error.
    assert!(TsmAttester::detect(&dir.path().join("absent"))
        .unwrap()
        .is_none());
}
