# ward default attestation policy for Intel TDX.
#
# input.tdx: claims of a quote verified to the pinned Intel root with its
# collateral (tcb_status, advisory_ids, mr_td, rtmr0..3, td_attributes, …).
# Reference values (data.reference):
#   tdx_mrtd: accepted MRTD values (hex); tdx_rtmr0..tdx_rtmr3 optionally
#   dcap_reject_out_of_date: [true] to make OutOfDate contraindicated
#     (default: warning)
# Without a matching MRTD, `executables` is a warning.
package policy

import rego.v1

default executables := 33

executables := 2 if {
	input.tdx.mr_td in data.reference.tdx_mrtd
	every i in ["0", "1", "2", "3"] {
		rtmr_ok(i)
	}
}

rtmr_ok(i) if not data.reference[concat("", ["tdx_rtmr", i])]

rtmr_ok(i) if input.tdx[concat("", ["rtmr", i])] in data.reference[concat("", ["tdx_rtmr", i])]

out_of_date := {"OutOfDate", "OutOfDateConfigurationNeeded"}

default hardware := 97

hardware := 2 if input.tdx.tcb_status == "UpToDate"

hardware := 3 if input.tdx.tcb_status in {"SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}

hardware := 32 if {
	input.tdx.tcb_status in out_of_date
	not data.reference.dcap_reject_out_of_date[0]
}

hardware := 96 if {
	input.tdx.tcb_status in out_of_date
	data.reference.dcap_reject_out_of_date[0]
}

# A debug TD can be read by the host.
default configuration := 2

configuration := 96 if input.tdx.td_attributes.debug
