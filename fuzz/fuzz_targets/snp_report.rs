//! SEV-SNP report parser: arbitrary bytes never panic, and every accessor
//! of an accepted report is total.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_snp::report::AttestationReport;
use ward_snp::Product;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AttestationReport::from_bytes(data) {
        let _ = (r.version(), r.policy().debug_allowed(), r.signing_key(), r.cpuid(), r.mitigation_vectors());
        let _ = (r.product_from_cpuid(), r.signature_rs(), r.current_version());
        for p in [Product::Milan, Product::Genoa, Product::Turin] {
            let _ = r.reported_tcb().parts(p);
            let _ = r.reported_tcb().at_least(r.committed_tcb(), p);
        }
    }
});
