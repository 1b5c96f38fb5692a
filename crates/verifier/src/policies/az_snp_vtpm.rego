# ward default attestation policy for Azure SEV-SNP confidential VMs
# (az-snp-vtpm).
#
# input["az-snp-vtpm"]: the SNP claims of the paravisor's report (as for the
# `snp` TEE) plus `tpm` (pcr00..pcr23, SHA-256, hex), `vm_configuration`
# and the quote. On Azure the SNP measurement covers Microsoft's paravisor;
# what the guest booted is in the PCRs. Reference values (data.reference):
#   tpm_pcrNN (e.g. tpm_pcr04, tpm_pcr11): accepted values of PCR NN (hex)
#   snp_min_bootloader, snp_min_tee, snp_min_snp, snp_min_microcode: minimum TCB
# `executables` is affirming only when at least one tpm_pcrNN reference is
# set and every PCR with a reference matches one of its values.
package policy

import rego.v1

claims := input["az-snp-vtpm"]

pcr_refs := {k | some k, _ in data.reference; startswith(k, "tpm_pcr")}

default executables := 33

executables := 2 if {
	count(pcr_refs) > 0
	every k in pcr_refs {
		claims.tpm[substring(k, 4, -1)] in data.reference[k]
	}
}

tcb_below(component) if {
	minimum := data.reference[concat("", ["snp_min_", component])][0]
	claims.reported_tcb[component] < minimum
}

default hardware := 2

hardware := 32 if {
	some component in ["bootloader", "tee", "snp", "microcode"]
	tcb_below(component)
}

default configuration := 2

configuration := 96 if {
	claims.policy.debug_allowed
} else := 32 if {
	claims.policy.migrate_ma_allowed
} else := 32 if {
	claims.vm_configuration["secure-boot"] == false
}
