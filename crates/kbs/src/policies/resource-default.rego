# ward default resource policy.
#
# input: the EAR claims of the attestation token; data["resource-path"]:
# ["repo", "type", "tag"]. Deny by default; release only to hardware TEEs
# (never to the sample TEE) whose appraisal is affirming: every trust claim
# the attestation policy made is good, which for SNP needs a reference
# measurement (see `ward admin reference-value`).
package policy

import rego.v1

default allow := false

allow if {
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
	input.submods.cpu0["ear.status"] == "affirming"
}
