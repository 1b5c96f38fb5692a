//! DCAP quote (with certification data) and CC event log parsers: no panic
//! on arbitrary bytes; accessors of accepted values are total.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_dcap::ccel::EventLog;
use ward_dcap::quote::Quote;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = Quote::parse(data) {
        let _ = (q.signed_bytes().len(), q.report_data(), q.signature.pck.pem_chain());
    }
    if let Ok(l) = EventLog::parse(data) {
        let _ = l.replay();
    }
});
