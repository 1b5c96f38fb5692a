//! CoCo `snp` evidence JSON → report bytes: arbitrary JSON never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = ward_snp::evidence::parse_evidence(&v);
    }
});
