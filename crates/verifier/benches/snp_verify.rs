//! Cost of verifying one SNP report once its chain is cached, against the
//! floor: one ECDSA P-384 verification of the same bytes.
//! `cargo bench -p ward-verifier --bench snp_verify`

use criterion::{criterion_group, criterion_main, Criterion};
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_snp::report::TcbParts;
use ward_snp::{AttestationReport, Product};
use ward_verifier::snp::SnpVerifier;
use ward_verifier::VerifierRegistry;

const NOW: i64 = 1_795_400_000;

fn bench(c: &mut Criterion) {
    let sim = SnpSim::generate(
        Product::Genoa,
        TcbParts {
            fmc: None,
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
        },
        NOW,
    )
    .expect("simulator");
    let params = SnpReportParams {
        measurement: [1; 48],
        report_data: [2; 64],
        ..Default::default()
    };
    let bytes = sim.report(&params).expect("report");
    let report = AttestationReport::from_bytes(&bytes).expect("parse");
    let bundle = vec![("sim".to_string(), sim.cert_chain_pem().into_bytes())];
    let verifier =
        SnpVerifier::with_simulated_roots(&bundle, &[sim.ark_fingerprint()]).expect("verifier");
    verifier
        .verify_report_with(&report, sim.vcek_der(), NOW)
        .expect("first verification fills the cache");

    let vcek = ward_snp::certs::AmdCert::from_der("VCEK", sim.vcek_der()).expect("vcek");
    let key = vcek.report_key().expect("key");
    let sig = report.signature_rs();
    c.bench_function("ecdsa_p384_verify (floor)", |b| {
        b.iter(|| {
            key.verify_sig(std::hint::black_box(report.signed_bytes()), &sig)
                .expect("valid")
        })
    });
    c.bench_function("snp report, cached chain", |b| {
        b.iter(|| {
            verifier
                .verify_report_with(std::hint::black_box(&report), sim.vcek_der(), NOW)
                .expect("valid")
        })
    });
    c.bench_function("snp report from raw bytes, cached chain", |b| {
        b.iter(|| {
            let r = AttestationReport::from_bytes(std::hint::black_box(&bytes)).expect("parse");
            verifier
                .verify_report_with(&r, sim.vcek_der(), NOW)
                .expect("valid")
        })
    });
    let mut reg = VerifierRegistry::new();
    reg.register(std::sync::Arc::new(verifier.clone()));
    let ev = TeeEvidence {
        primary_evidence: sim.evidence_json(&params).expect("json"),
        additional_evidence: String::new(),
    };
    c.bench_function("snp CoCo evidence JSON, cached chain", |b| {
        b.iter(|| {
            reg.verify_evidence(&Tee::new("snp"), std::hint::black_box(&ev), NOW)
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
