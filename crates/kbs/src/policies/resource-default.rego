# ward default resource policy.
#
# input: the EAR claims of the attestation token; data["resource-path"]:
# ["repo", "type", "tag"]. Deny by default; release only to hardware TEEs
# (never to the sample TEE) whose appraisal is affirming or warning.
package policy

import rego.v1

default allow := false

allow if {
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
	input.submods.cpu0["ear.status"] in {"affirming", "warning"}
}
