# ward default attestation policy for AMD SEV-SNP.
#
# input.snp: claims of a report verified to a pinned AMD root (see
# ward-verifier snp.rs). Reference values (data.reference):
#   snp_launch_measurement: accepted launch measurements (hex)
#   snp_min_bootloader, snp_min_tee, snp_min_snp, snp_min_microcode: minimum TCB
# Without a matching measurement, `executables` is a warning, so the default
# resource policy (affirming only) releases nothing until one is set.
package policy

import rego.v1

default executables := 33

executables := 2 if input.snp.measurement in data.reference.snp_launch_measurement

tcb_below(component) if {
	minimum := data.reference[concat("", ["snp_min_", component])][0]
	input.snp.reported_tcb[component] < minimum
}

default hardware := 2

hardware := 32 if {
	some component in ["bootloader", "tee", "snp", "microcode"]
	tcb_below(component)
}

# Debug lets the host read guest memory; a migration agent may export it;
# a report requested from VMPL > 0 does not speak for the most privileged
# guest software.
default configuration := 2

configuration := 96 if {
	input.snp.policy.debug_allowed
} else := 32 if {
	input.snp.policy.migrate_ma_allowed
} else := 32 if {
	input.snp.vmpl > 0
}
