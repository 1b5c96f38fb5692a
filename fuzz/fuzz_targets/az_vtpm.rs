//! Azure vTPM evidence parsers: the HCL report, TPMS_ATTEST and the
//! evidence JSON never panic; accessors of accepted values are total.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_vtpm::evidence::AzEvidence;
use ward_vtpm::hcl::HclReport;
use ward_vtpm::tpm::QuoteInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = HclReport::parse(data) {
        let _ = (h.ak_pub(), h.user_data(), h.vm_configuration(), h.var_data_hash());
        let _ = h.check_var_data_hash(&data[..data.len().min(64)]);
    }
    if let Ok(q) = QuoteInfo::parse(data) {
        let _ = q.check_pcrs(&[[0u8; 32]; 24]);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = AzEvidence::from_json(&v, "vcek");
    }
});
