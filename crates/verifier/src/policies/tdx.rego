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
	not rtmr_mismatch
}

# An RTMR with reference values must be one of them. Each is named (not
# built from an index) so that the verdict depends on these claims only and
# is memoized across guests.
rtmr_mismatch if {
	data.reference.tdx_rtmr0
	not input.tdx.rtmr0 in data.reference.tdx_rtmr0
}

rtmr_mismatch if {
	data.reference.tdx_rtmr1
	not input.tdx.rtmr1 in data.reference.tdx_rtmr1
}

rtmr_mismatch if {
	data.reference.tdx_rtmr2
	not input.tdx.rtmr2 in data.reference.tdx_rtmr2
}

rtmr_mismatch if {
	data.reference.tdx_rtmr3
	not input.tdx.rtmr3 in data.reference.tdx_rtmr3
}

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
