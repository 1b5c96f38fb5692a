//! AMD certificate parsing (DER and PEM): arbitrary bytes never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_snp::certs::AmdCert;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = AmdCert::from_der_or_pem("fuzz", data) {
        let _ = c.signed_by(&c);
        let _ = c.report_key();
    }
    let _ = AmdCert::from_pem_bundle("fuzz", data);
});
