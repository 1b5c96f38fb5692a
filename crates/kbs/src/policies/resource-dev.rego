# ward development resource policy (`ward serve --dev`): any successfully
# attested guest, the sample TEE included, may fetch any resource.
# Never use this in production.
package policy

import rego.v1

default allow := true
