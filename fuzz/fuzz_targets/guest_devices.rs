//! What the guest reads from devices and host services never panics: TPM
//! 2.0 frames and response parameters, the attester's TPM calls against a
//! device answering arbitrary bytes, and QGS quote answers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_guest::az_vtpm::{Tpm, TpmDevice};
use ward_guest::tdx_guest::parse_qgs_quote_response;
use ward_vtpm::tpm2::{parse_pcr_read, parse_quote, Command, NvPublic, Response};

#[derive(Debug)]
struct Answers(Vec<u8>);

impl TpmDevice for Answers {
    fn transact(&self, _command: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Command::parse(data);
    for sessions in [false, true] {
        if let Ok(r) = Response::parse(data, sessions) {
            let _ = (parse_quote(&r.params), parse_pcr_read(&r.params));
            let _ = NvPublic::parse_sized(&r.params);
        }
    }
    let _ = parse_qgs_quote_response(data);
    let tpm = Tpm::new(Box::new(Answers(data.to_vec())));
    let _ = tpm.nv_public(0x0140_0001);
    let _ = tpm.nv_read(0x0140_0001, 16 * 1024);
    let _ = tpm.quote(0x8100_0003, &[0; 48]);
    let _ = tpm.pcrs();
    let _ = tpm.nv_write_owner(0x0140_0002, &[0; 64]);
});
