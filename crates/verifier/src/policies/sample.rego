# ward default attestation policy for the sample TEE.
#
# Output: AR4SI trustworthiness claims (integers). The sample TEE has no
# hardware root, so `hardware` is contraindicated (97, as in the reference
# default policy) unless the operator lists its svn as a reference value; the
# default resource policy refuses sample evidence whatever this policy says.
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

executables := 3 if {
	input.sample.launch_digest in data.reference.sample_launch_digest
}

hardware := 2 if {
	input.sample.svn in data.reference.sample_svn
}

configuration := 2 if {
	input.sample.debug == false
}

configuration := 96 if {
	input.sample.debug == true
}
