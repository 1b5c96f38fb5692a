# ward default attestation policy for Intel SGX enclaves.
#
# input.sgx: claims of a quote verified to the pinned Intel root with its
# collateral (tcb_status, advisory_ids, mr_enclave, mr_signer, isv_prod_id,
# isv_svn, attributes, …). Reference values (data.reference):
#   sgx_mrenclave: accepted MRENCLAVE values, or
#   sgx_mrsigner (with optional sgx_min_isv_svn): accepted signers
#   dcap_reject_out_of_date: [true] to make OutOfDate contraindicated
package policy

import rego.v1

default executables := 33

executables := 2 if input.sgx.mr_enclave in data.reference.sgx_mrenclave

executables := 2 if {
	input.sgx.mr_signer in data.reference.sgx_mrsigner
	not below_min_svn
}

below_min_svn if input.sgx.isv_svn < data.reference.sgx_min_isv_svn[0]

out_of_date := {"OutOfDate", "OutOfDateConfigurationNeeded"}

default hardware := 97

hardware := 2 if input.sgx.tcb_status == "UpToDate"

hardware := 3 if input.sgx.tcb_status in {"SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}

hardware := 32 if {
	input.sgx.tcb_status in out_of_date
	not data.reference.dcap_reject_out_of_date[0]
}

hardware := 96 if {
	input.sgx.tcb_status in out_of_date
	data.reference.dcap_reject_out_of_date[0]
}

# A debug enclave can be read by its host.
default configuration := 2

configuration := 96 if input.sgx.attributes.debug
