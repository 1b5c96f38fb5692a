# ward's Kata agent policy rules.
#
# The Kata agent asks `data.agent_policy.<Request>` for every request the
# host sends (agent.proto), with `input` the serde JSON form of that
# request. The answer is a boolean, or {"allowed": bool, "ops": [...]}
# where `ops` is a JSON patch (RFC 6902) the agent applies to its data
# when the request is allowed: that is how state (which container ID is
# which container of the pod, the pod's network namespace) is carried
# from one request to the next, under `data.pstate`.
#
# Everything is denied unless a rule below allows it. The generator
# appends `policy_data`: the pod's containers as the workload owner's YAML
# and the images' metadata define them, and the settings of the runtime.
#
# For each refusal, `violations` names the rule, the field of the request,
# what the policy expected and what the request held; `ward policy check`
# prints them. The agent itself only reads the decision.

package agent_policy

import rego.v1

# --- Requests that change nothing a workload relies on --------------------

default StartContainerRequest := true

default WaitProcessRequest := true

default SignalProcessRequest := true

default StatsContainerRequest := true

default PauseContainerRequest := true

default ResumeContainerRequest := true

default UpdateContainerRequest := true

default RemoveStaleVirtiofsShareMountsRequest := true

default WriteStreamRequest := true

default CloseStdinRequest := true

default TtyWinResizeRequest := true

default ListInterfacesRequest := true

default ListRoutesRequest := true

default GetIPTablesRequest := true

default GetMetricsRequest := true

default DestroySandboxRequest := true

default OnlineCPUMemRequest := true

default GuestDetailsRequest := true

default MemHotplugByProbeRequest := true

default SetGuestDateTimeRequest := true

default GetOOMEventRequest := true

default AddSwapRequest := true

default VolumeStatsRequest := true

default ResizeVolumeRequest := true

default ReseedRandomDevRequest := true

# --- Denied unless a rule below allows it ----------------------------------

default CreateContainerRequest := {"allowed": false}

default RemoveContainerRequest := {"allowed": false}

default ExecProcessRequest := false

default CopyFileRequest := false

default CreateSandboxRequest := false

default UpdateInterfaceRequest := false

default UpdateRoutesRequest := false

default AddARPNeighborsRequest := false

default ReadStreamRequest := false

# Never allowed: rules the host could use to rewrite what the guest
# enforces, or to run what the pod did not ask for.
default SetPolicyRequest := false

default SetIPTablesRequest := false

default UpdateEphemeralMountsRequest := false

default PullImageRequest := false

default StartTracingRequest := false

default StopTracingRequest := false

# --- Helpers --------------------------------------------------------------

violation(rule, field, expected, actual) := {
	"rule": rule,
	"field": field,
	"expected": expected,
	"actual": actual,
}

# The request's optional messages may be null (the agent serialises an
# absent message so): every object or list is read through these, so a
# null or mistyped one is empty, never a rule that silently does not run.
obj(x) := x if is_object(x)

else := {}

arr(x) := x if is_array(x)

else := []

field_obj(o, k) := obj(object.get(obj(o), k, {}))

field_arr(o, k) := arr(object.get(obj(o), k, []))

pstate := object.get(data, "pstate", {})

known_containers := object.get(pstate, "containers", {})

# --- CreateContainer --------------------------------------------------------
#
# The request is matched against the one container of the policy with its
# kind (sandbox or container) and name. Checks are grouped so that each is
# one lookup or one comparison: regorus evaluates every rule of a query.

oci := field_obj(input, "OCI")

annotations := field_obj(oci, "Annotations")

process := field_obj(oci, "Process")

linux := field_obj(oci, "Linux")

root := field_obj(oci, "Root")

input_user := field_obj(process, "User")

input_kind := object.get(annotations, "io.kubernetes.cri.container-type", "")

input_name := object.get(annotations, "io.kubernetes.cri.container-name", "")

candidate_index := i if {
	some i, c in policy_data.containers
	c.kind == input_kind
	c.name == input_name
}

candidate := policy_data.containers[candidate_index]

bundle_id := regex.replace(object.get(annotations, "io.katacontainers.pkg.oci.bundle_path", ""), "^.*/", "")

guest_rootfs := sprintf("/run/kata-containers/%s/rootfs", [bundle_id])

CreateContainerRequest := {"allowed": true, "ops": fast_create_ops} if {
	fast_create_ops
} else := {"allowed": true, "ops": create_ops} if {
	candidate
	count(create_violations) == 0
}

create_ops := [
	{"op": "add", "path": "/pstate/containers", "value": object.union(known_containers, {object.get(input, "container_id", ""): candidate_index})},
	{"op": "add", "path": "/pstate/netns", "value": input_netns},
]

create_violations contains violation("container", "OCI.Annotations[io.kubernetes.cri.container-name]", [c.name | some c in policy_data.containers; c.kind == input_kind], input_name) if {
	not candidate
}

# Fields with one expected value: [actual, expected, rule].
exact_fields := {
	"OCI.Process.Cwd": [object.get(process, "Cwd", ""), candidate.cwd, "cwd"],
	"OCI.Process.User.UID": [object.get(input_user, "UID", 0), candidate.user.uid, "user"],
	"OCI.Process.User.GID": [object.get(input_user, "GID", 0), candidate.user.gid, "user"],
	"OCI.Process.User.AdditionalGids": [sort(field_arr(input_user, "AdditionalGids")), candidate.user.additional_gids, "user"],
	"OCI.Process.User.Username": [object.get(input_user, "Username", ""), "", "user"],
	"string_user": [object.get(input, "string_user", null), null, "user"],
	"OCI.Process.NoNewPrivileges": [object.get(process, "NoNewPrivileges", false), candidate.no_new_privileges, "privileges"],
	"OCI.Process.Terminal": [object.get(process, "Terminal", false), candidate.terminal, "terminal"],
	"OCI.Process.SelinuxLabel": [object.get(process, "SelinuxLabel", ""), "", "security"],
	"OCI.Root.Path": [object.get(root, "Path", ""), guest_rootfs, "root"],
	"OCI.Root.Readonly": [object.get(root, "Readonly", false), candidate.readonly_root, "root"],
	"OCI.Hooks": [object.get(oci, "Hooks", null), null, "hooks"],
	"OCI.Linux.Devices": [field_arr(linux, "Devices"), [], "devices"],
	"OCI.Linux.UIDMappings": [field_arr(linux, "UIDMappings"), [], "namespaces"],
	"OCI.Linux.GIDMappings": [field_arr(linux, "GIDMappings"), [], "namespaces"],
	"sandbox_pidns": [object.get(input, "sandbox_pidns", false), candidate.share_pid, "namespaces"],
	"shared_mounts": [field_arr(input, "shared_mounts"), [], "mounts"],
}

create_violations contains violation(f[2], field, f[1], f[0]) if {
	candidate
	some field, f in exact_fields
	f[0] != f[1]
}

create_violations contains violation("security", "OCI.Process.ApparmorProfile", policy_data.settings.apparmor_profiles, p) if {
	candidate
	p := object.get(process, "ApparmorProfile", "")
	not p in policy_data.settings.apparmor_profiles
}

# Annotations: each one the request carries is one this container's policy
# lists, with a value it allows.

create_violations contains violation("annotations", sprintf("OCI.Annotations[%s]", [k]), object.get(candidate.annotations, k, "not allowed"), v) if {
	candidate
	some k, v in annotations
	not annotation_allowed(k, v)
}

annotation_allowed(k, v) if string_matches(candidate.annotations[k], v)

annotation_allowed(k, v) if {
	candidate.gpus > 0
	regex.match("^cdi\\.k8s\\.io/vfio[0-9]+$", k)
	regex.match("^nvidia\\.com/gpu=[0-9]+$", v)
}

# An expected string: {"exact": s}, {"one_of": [s, ...]}, {"regex": r}
# (a value only known at run time), or {"any": true}.
string_matches(e, s) if e.exact == s

string_matches(e, s) if s in e.one_of

string_matches(e, s) if regex.match(e.regex, s)

string_matches(e, s) if {
	e.any
	is_string(s)
}

# GPUs: as many CDI annotations as the container asks for, each naming a
# hot-plugged VFIO device of the request when devices are hot-plugged.

cdi_numbers := [n |
	some k, _ in annotations
	startswith(k, "cdi.k8s.io/")
	n := trim_prefix(k, "cdi.k8s.io/vfio")
]

input_devices := field_arr(input, "devices")

create_violations contains violation("devices", "OCI.Annotations[cdi.k8s.io/*]", candidate.gpus, count(cdi_numbers)) if {
	candidate
	count(cdi_numbers) != candidate.gpus
}

create_violations contains violation("devices", "devices", candidate.gpus, count(input_devices)) if {
	candidate
	count(input_devices) > 0
	count(input_devices) != candidate.gpus
}

create_violations contains violation("devices", sprintf("devices[%d]", [i]), "a VFIO device at /dev/vfio/devices/vfioN named by a cdi.k8s.io/vfioN annotation", d) if {
	candidate
	some i, d in input_devices
	not vfio_device_ok(d)
}

create_violations contains violation("devices", "devices[*].container_path", "distinct devices", [d.container_path | some d in input_devices]) if {
	candidate
	count({d.container_path | some d in input_devices}) != count(input_devices)
}

vfio_device_ok(d) if {
	startswith(object.get(d, "type_", ""), "vfio")
	n := trim_prefix(d.container_path, "/dev/vfio/devices/vfio")
	regex.match("^[0-9]+$", n)
	d.id == sprintf("vfio%s", [n])
	n in cdi_numbers
}

# The process: arguments, environment, capabilities.

input_args := field_arr(process, "Args")

create_violations contains violation("args", "OCI.Process.Args", candidate.args, input_args) if {
	candidate
	not args_match(candidate.args, input_args)
}

args_match(expected, actual) if {
	count(expected) == count(actual)
	every i, e in expected {
		string_matches(e, actual[i])
	}
}

create_violations contains violation("env", "OCI.Process.Env", "a variable the pod or its image defines, or one Kubernetes injects", e) if {
	candidate
	some e in field_arr(process, "Env")
	not env_allowed(candidate, e)
}

env_allowed(c, e) if c.env[e]

env_allowed(c, e) if regex.match(c.env_pattern, e)

env_allowed(_, e) if regex.match(policy_data.settings.env_pattern, e)

input_caps := field_obj(process, "Capabilities")

create_violations contains violation("capabilities", sprintf("OCI.Process.Capabilities.%s", [set_name]), expected, actual) if {
	candidate
	some set_name, expected in candidate.capabilities
	actual := sort(caps_expanded(field_arr(input_caps, set_name)))
	actual != expected
}

# `$(default_caps)` is the placeholder genpolicy-era requests carry for the
# runtime's default set; the agent refuses it as a capability name, so
# reading it as that set grants nothing.
caps_expanded(caps) := policy_data.settings.default_capabilities if {
	caps == ["$(default_caps)"]
} else := caps

# Linux: namespaces, masked and read-only paths, sysctls.

input_namespaces := field_arr(linux, "Namespaces")

input_netns := p if {
	some ns in input_namespaces
	ns.Type == "network"
	p := object.get(ns, "Path", "")
} else := ""

create_violations contains violation("namespaces", "OCI.Linux.Namespaces", "ipc, uts, mount and network namespaces of the pod's own, pid only when the pod shares it", ns) if {
	candidate
	some ns in input_namespaces
	not namespace_allowed(ns)
}

namespace_allowed(ns) if {
	ns.Type in {"ipc", "uts", "mount", "cgroup"}
	object.get(ns, "Path", "") == ""
}

namespace_allowed(ns) if ns.Type == "network"

namespace_allowed(ns) if {
	ns.Type == "pid"
	candidate.share_pid
}

# Every container of the sandbox joins the network namespace the first one
# was given.
create_violations contains violation("namespaces", "OCI.Linux.Namespaces[network].Path", pstate.netns, input_netns) if {
	candidate
	pstate.netns != input_netns
}

create_violations contains violation("paths", field, sort(missing), "missing") if {
	candidate
	some field, required in {
		"OCI.Linux.MaskedPaths": policy_data.settings.masked_paths,
		"OCI.Linux.ReadonlyPaths": policy_data.settings.readonly_paths,
	}
	present := {p | some p in field_arr(linux, trim_prefix(field, "OCI.Linux."))}
	missing := {p | some p in required} - present
	count(missing) > 0
}

create_violations contains violation("sysctls", sprintf("OCI.Linux.Sysctl[%s]", [k]), object.get(allowed_sysctls, k, "not set"), v) if {
	candidate
	some k, v in field_obj(linux, "Sysctl")
	object.get(allowed_sysctls, k, null) != v
}

allowed_sysctls := object.union(policy_data.settings.sandbox_sysctls, policy_data.pod.sysctls)

# Mounts: each is one the pod's volumes, its image or the runtime define
# at that destination, at most once per destination.

input_mounts := field_arr(oci, "Mounts")

create_violations contains violation("mounts", sprintf("OCI.Mounts[%d]", [i]), object.get(candidate.mounts, object.get(mount, "destination", ""), sprintf("no mount at this destination; the policy has %v", [object.keys(candidate.mounts)])), mount) if {
	candidate
	some i, mount in input_mounts
	not mount_allowed(mount)
}

create_violations contains violation("mounts", "OCI.Mounts[*].destination", "each destination once", dests) if {
	candidate
	dests := [m.destination | some m in input_mounts]
	count({d | some d in dests}) != count(dests)
}

mount_allowed(mount) if {
	m := candidate.mounts[mount.destination]
	m.type == object.get(mount, "type_", "")
	regex.match(m.source, object.get(mount, "source", ""))
	options_allowed(m, object.get(mount, "options", []))
}

options_allowed(m, options) if {
	given := {o | some o in options}
	count(given) == count(options)
	required := {o | some o in m.options}
	count(required - given) == 0
	count(given - required - {o | some o in object.get(m, "extra_options", [])}) == 0
}

# Storages: the image pulled in the guest, pinned by digest, and the
# pod's emptyDir volumes on encrypted block devices.

input_storages := field_arr(input, "storages")

create_violations contains violation("storages", sprintf("storages[%d]", [i]), "the image pulled by digest, or an ephemeral encrypted emptyDir volume", s) if {
	candidate
	some i, s in input_storages
	not storage_allowed(s)
}

create_violations contains violation("storages", "storages[*]", "at most one image pull", count(pulls)) if {
	candidate
	pulls := [s | some s in input_storages; s.driver == policy_data.settings.image_storage_driver]
	count(pulls) > 1
}

storage_allowed(s) if {
	s.driver == policy_data.settings.image_storage_driver
	s.source in candidate.pull_sources
	s.fstype == "overlay"
	s.mount_point == guest_rootfs
	count(object.get(s, "options", [])) == 0
	count(s.driver_options) == 1
	pull_metadata_matches(s.driver_options[0])
}

# The pull's metadata is the request's own annotations: the host cannot
# describe one image to the policy and another to the puller.
pull_metadata_matches(option) if {
	prefix := sprintf("%s=", [policy_data.settings.image_storage_driver])
	startswith(option, prefix)
	meta := json.unmarshal(trim_prefix(option, prefix))
	meta.metadata == annotations
}

storage_allowed(s) if {
	candidate.emptydirs > 0
	s.driver == "blk"
	s.driver_options == ["encryption_key=ephemeral", "create_filesystem"]
	s.fstype == "ext4"
	count(object.get(s, "options", [])) == 0
	regex.match("^[0-9a-f]{2}(/[0-9a-f]{2})*$", s.source)
	s.mount_point == sprintf("/run/kata-containers/sandbox/storage/%s", [base64.encode(s.source)])
	fs_group_allowed(object.get(s, "fs_group", null))
}

fs_group_allowed(g) if g == null

fs_group_allowed(g) if g.group_id == policy_data.pod.fs_group

# Layers mounted by the host as tar file systems under dm-verity (the
# tardev snapshotter): each layer device carries the root hash of one of
# the image's layers, and the overlay over them lists exactly the image's
# layers, upper first, each with its root hash.

layer_options := ["ro", "io.katacontainers.fs-opt.block_device=file", "io.katacontainers.fs-opt.is-layer"]

storage_allowed(s) if {
	count(candidate.layer_roots) > 0
	s.driver == "blk"
	s.fstype == "tar"
	regex.match("^/run/kata-containers/sandbox/layers/[A-Za-z0-9_.-]+$", s.mount_point)
	count(s.options) == 4
	array.slice(s.options, 0, 3) == layer_options
	some hash in candidate.layer_roots
	s.options[3] == sprintf("io.katacontainers.fs-opt.root-hash=%s", [hash])
}

storage_allowed(s) if {
	count(candidate.layer_roots) > 0
	s.driver == "overlayfs"
	s.mount_point == guest_rootfs
	names := split(s.options[0], ":")
	count(names) == count(candidate.layer_roots)
	count(s.options) == count(names) + 1
	every i, hash in candidate.layer_roots {
		startswith(s.options[i + 1], "io.katacontainers.fs-opt.layer=")
		layer := base64.decode(trim_prefix(s.options[i + 1], "io.katacontainers.fs-opt.layer="))
		layer == concat(",", array.concat([names[i], "tar"], array.concat(layer_options, [sprintf("io.katacontainers.fs-opt.root-hash=%s", [hash])])))
	}
}

# --- CreateContainer: the fast path -------------------------------------------
#
# The rules above evaluate every check of a request one by one, which costs
# about a millisecond in regorus. The fast path below decides the usual
# form of an application container's request (the annotations, mounts and
# environment the runtime and Kubernetes give) with whole-value comparisons
# and a few string builtins, and no regular expression. It reads the
# `fast` entries the generator writes next to the data above, and only
# from the agent's state (kept there by CreateSandbox).
#
# It only ever allows what the rules above allow: every value it accepts
# is one the corresponding pattern above matches (ward's tests check the
# two agree on the whole corpus and on every mutation of it). A request in
# any other form makes it undefined, and the rules above decide.

fast_create_ops := ops if {
	pd := data.pstate.policy_data
	s := pd.fast
	oci := input.OCI
	ann := oci.Annotations
	some i, c in pd.containers
	f := c.fast
	[c.kind, c.name] == [ann["io.kubernetes.cri.container-type"], ann["io.kubernetes.cri.container-name"]]

	# Annotations: exactly these nine, each as the rules above allow.
	count(ann) == 9
	ann["io.katacontainers.pkg.oci.container_type"] == "pod_container"
	ann["io.kubernetes.cri.image-name"] in c.image_names
	name := ann["io.kubernetes.cri.sandbox-name"]
	fast_name(f.name, name)
	fast_namespace(f.namespace, ann["io.kubernetes.cri.sandbox-namespace"])
	bundle_path := ann["io.katacontainers.pkg.oci.bundle_path"]
	startswith(bundle_path, s.bundle_prefix)
	b := substring(bundle_path, count(s.bundle_prefix), -1)
	sid := ann["io.kubernetes.cri.sandbox-id"]
	uid := ann["io.kubernetes.cri.sandbox-uid"]
	[b != "", count(sid), count(uid), indexof_n(uid, "-")] == [true, 64, 36, [8, 13, 18, 23]]
	[trim(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"), trim(sid, "abcdefghijklmnopqrstuvwxyz0123456789"), trim(uid, "0123456789abcdef-")] == ["", "", ""]

	# The fields with one expected value.
	p := oci.Process
	u := p.User
	l := oci.Linux
	root := oci.Root
	rootfs := sprintf("/run/kata-containers/%s/rootfs", [b])
	[p.Cwd, u.UID, u.GID, u.AdditionalGids, u.Username, input.string_user, p.NoNewPrivileges, p.Terminal, p.SelinuxLabel, root.Path, root.Readonly, oci.Hooks, l.Devices, l.UIDMappings, l.GIDMappings, object.get(input, "sandbox_pidns", false), object.get(input, "shared_mounts", []), object.get(input, "devices", []), l.Sysctl] == [c.cwd, c.user.uid, c.user.gid, c.user.additional_gids, "", null, c.no_new_privileges, c.terminal, "", rootfs, c.readonly_root, null, [], [], [], c.share_pid, [], [], {}]
	p.ApparmorProfile in s.apparmor_profiles
	count(c.args) == count(p.Args)
	every j, a in c.args {
		a.exact == p.Args[j]
	}
	caps := p.Capabilities
	fc := c.capabilities
	[caps.Ambient, caps.Inheritable, sort(caps.Bounding), sort(caps.Effective), sort(caps.Permitted)] == [fc.Ambient, fc.Inheritable, fc.Bounding, fc.Effective, fc.Permitted]
	[count(object.keys(s.masked_paths) - {x | some x in l.MaskedPaths}), count(object.keys(s.readonly_paths) - {x | some x in l.ReadonlyPaths})] == [0, 0]

	# Namespaces: the pod's own, and the network namespace of the first
	# container.
	netns := fast_netns(l.Namespaces)
	object.get(data.pstate, "netns", netns) == netns

	# Environment: the pod's and the image's exactly, the pod's host name,
	# and the variables of the cluster's `kubernetes` service.
	rest := ({e | some e in p.Env} - object.keys(f.env)) - {concat("", ["HOSTNAME=", name])}
	fast_env(rest)

	# Mounts, sorted by destination: destination, type and options as the
	# policy lists them (with or without the options the runtime may add); sources exactly, where a file the host shares for
	# this container (<prefix><bundle id>-<16 random characters>-<name>)
	# has its random part checked and then replaced by a fixed one. No
	# expected source holds a newline, so joining them is unambiguous.
	ms := sort(oci.Mounts)
	[[m.destination, m.type_, m.options] | some m in ms] in f.mounts
	sources := [m.source | some m in ms]
	sp := concat("", [s.shared_prefix, b, "-"])
	n := count(sp)
	random := concat("", [substring(sources[j], n, 16) | some j in f.shared])
	[count(random), trim(random, "abcdefghijklmnopqrstuvwxyz0123456789")] == [16 * count(f.shared), ""]
	fixed := {concat("", [sp, substring(random, 16 * k, 16)]): s.shared_fixed | some k, _ in f.shared}
	strings.replace_n(fixed, concat("\n", sources)) == f.sources

	# Storage: the one image pull, by digest, with the request's own
	# annotations as its metadata.
	[st] := input.storages
	[st.driver, st.fstype, st.mount_point, st.options] == [s.image_storage_driver, "overlay", rootfs, []]
	st.source in c.pull_sources
	[option] := st.driver_options
	startswith(option, s.pull_prefix)
	json.unmarshal(substring(option, count(s.pull_prefix), -1)) == {"metadata": ann}

	ops := [
		{"op": "add", "path": "/pstate/containers", "value": object.union(object.get(data.pstate, "containers", {}), {input.container_id: i})},
		{"op": "add", "path": "/pstate/netns", "value": netns},
	]
}

# The environment beyond the pod's and the image's: none, or the variables
# of the cluster's `kubernetes` service (in the order of a set), each of
# the form the settings' patterns allow.
fast_env(rest) if count(rest) == 0

fast_env(rest) if {
	[e1, e2, e3, e4, e5, e6, e7, e8] := [e | some e in rest]
	ip := substring(e6, 24, -1)
	port := substring(e7, 24, -1)
	[count(ip) >= 2, count(ip) <= 45, port != "", count(port) <= 5, trim(ip, "0123456789ABCDEFabcdef.:"), trim(port, "0123456789")] == [true, true, true, true, "", ""]
	concat("\n", [e1, e2, e3, e4, e5, e6, e7, e8]) == sprintf("KUBERNETES_PORT=tcp://%s:%s\nKUBERNETES_PORT_%s_TCP=tcp://%s:%s\nKUBERNETES_PORT_%s_TCP_ADDR=%s\nKUBERNETES_PORT_%s_TCP_PORT=%s\nKUBERNETES_PORT_%s_TCP_PROTO=tcp\nKUBERNETES_SERVICE_HOST=%s\nKUBERNETES_SERVICE_PORT=%s\nKUBERNETES_SERVICE_PORT_HTTPS=%s", [ip, port, port, ip, port, port, ip, port, port, port, ip, port, port])
}

# A pod name: exactly `base`, or `base` then `-`-separated parts, each of
# the characters its entry lists.
fast_name(f, n) if {
	f.parts == []
	n == f.base
}

fast_name(f, n) if {
	count(f.parts) > 0
	count(n) <= 253
	startswith(n, f.base)
	parts := split(substring(n, count(f.base), -1), "-")
	count(parts) == count(f.parts)
	every j, chars in f.parts {
		parts[j] != ""
		trim(parts[j], chars) == ""
	}
}

# The namespace the YAML names, or (none named) any DNS label.
fast_namespace(expected, ns) if {
	expected != ""
	ns == expected
}

fast_namespace(expected, ns) if {
	expected == ""
	ns != ""
	trim(ns, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
	trim(ns, "-") == ns
}

fast_netns(namespaces) := "" if {
	namespaces == [{"Path": "", "Type": "ipc"}, {"Path": "", "Type": "uts"}, {"Path": "", "Type": "mount"}]
}

fast_netns(namespaces) := path if {
	[{"Path": "", "Type": "ipc"}, {"Path": "", "Type": "uts"}, {"Path": "", "Type": "mount"}, {"Path": path, "Type": "network"}] = namespaces
	is_string(path)
}

# --- RemoveContainer ----------------------------------------------------------

RemoveContainerRequest := {"allowed": true, "ops": [{"op": "add", "path": "/pstate/containers", "value": object.remove(known_containers, [input.container_id])}]}

# --- ExecProcess --------------------------------------------------------------

exec_container := policy_data.containers[known_containers[input.container_id]]

exec_process := field_obj(input, "process")

ExecProcessRequest if {
	exec_container
	count(exec_violations) == 0
}

exec_violations contains violation("container", "container_id", "a container this policy created", input.container_id) if {
	not exec_container
}

exec_violations contains violation("exec", "process.Args", exec_container.execs, object.get(exec_process, "Args", [])) if {
	exec_container
	not exec_args_allowed(object.get(exec_process, "Args", []))
}

exec_args_allowed(a) if a in exec_container.execs

exec_args_allowed(a) if a in policy_data.settings.allowed_exec

exec_violations contains violation("env", "process.Env", "a variable of the container", e) if {
	exec_container
	some e in field_arr(exec_process, "Env")
	not env_allowed(exec_container, e)
}

exec_violations contains violation("cwd", "process.Cwd", exec_container.cwd, object.get(exec_process, "Cwd", "")) if {
	exec_container
	object.get(exec_process, "Cwd", "") != exec_container.cwd
}

exec_violations contains violation("terminal", "process.Terminal", false, exec_process.Terminal) if {
	exec_container
	object.get(exec_process, "Terminal", false) != false
}

exec_violations contains violation("capabilities", "process.Capabilities", null, exec_process.Capabilities) if {
	exec_container
	object.get(exec_process, "Capabilities", null) != null
}

exec_violations contains violation("privileges", "process.NoNewPrivileges", exec_container.no_new_privileges, object.get(exec_process, "NoNewPrivileges", false)) if {
	exec_container
	object.get(exec_process, "NoNewPrivileges", false) != exec_container.no_new_privileges
}

exec_violations contains violation("user", "process.User", exec_container.user, u) if {
	exec_container
	u := field_obj(exec_process, "User")
	not exec_user_matches(u)
}

exec_user_matches(u) if {
	object.get(u, "UID", 0) == exec_container.user.uid
	object.get(u, "GID", 0) == exec_container.user.gid
	sort(field_arr(u, "AdditionalGids")) == exec_container.user.additional_gids
	object.get(u, "Username", "") == ""
}

exec_violations contains violation("user", "string_user", null, input.string_user) if {
	exec_container
	object.get(input, "string_user", null) != null
}

exec_violations contains violation("security", "process.SelinuxLabel", "", exec_process.SelinuxLabel) if {
	exec_container
	object.get(exec_process, "SelinuxLabel", "") != ""
}

exec_violations contains violation("security", "process.ApparmorProfile", "", exec_process.ApparmorProfile) if {
	exec_container
	object.get(exec_process, "ApparmorProfile", "") != ""
}

# --- ReadStream (container logs) ---------------------------------------------

ReadStreamRequest if policy_data.allow_logs

# --- CopyFile -------------------------------------------------------------------

# The host copies the files of a pod's ConfigMap, Secret, service-account
# and /etc/hosts-like volumes into the shared directory, one directory
# entry per volume file named <container>-<random>-<name>; nothing outside
# it, no traversal, no symlink leaving it.

copy_path := object.get(input, "path", "")

copy_rest := trim_prefix(copy_path, policy_data.settings.shared_files_prefix)

copy_parts := split(copy_rest, "/")

CopyFileRequest if {
	count(copy_violations) == 0
}

copy_violations contains violation("copyfile", "path", sprintf("under %s", [policy_data.settings.shared_files_prefix]), copy_path) if {
	not startswith(copy_path, policy_data.settings.shared_files_prefix)
}

copy_violations contains violation("copyfile", "path", "<container id>-<16 characters>-<name> as the first component", copy_path) if {
	not regex.match("^[0-9a-z]{64}-[0-9a-z]{16}-.+$", copy_parts[0])
}

copy_violations contains violation("copyfile", "path", "no . or .. component", copy_path) if {
	some p in copy_parts
	p in {".", ".."}
}

copy_violations contains violation("copyfile", "file_type", ["Regular", "Directory", "Symlink"], object.get(input, "file_type", "")) if {
	not object.get(input, "file_type", "") in {"Regular", "Directory", "Symlink"}
}

copy_violations contains violation("copyfile", "path", "a symlink below a volume's top-level entry", copy_path) if {
	object.get(input, "file_type", "") == "Symlink"
	count(copy_parts) < 2
}

copy_violations contains violation("copyfile", "symlink_target", "a relative target that stays inside its volume", target) if {
	object.get(input, "file_type", "") == "Symlink"
	target := object.get(input, "symlink_target", "")
	not symlink_target_ok(target)
}

symlink_target_ok(t) if {
	t != ""
	not startswith(t, "/")
	every p in split(t, "/") {
		p != ".."
	}
}

# --- CreateSandbox ------------------------------------------------------------------

# An allowed CreateSandbox, the agent's first request, keeps the policy's
# data in the agent's state: the fast path below reads it from there, as
# data (a literal of the policy text is built again on every query).
CreateSandboxRequest := {"allowed": true, "ops": [{"op": "add", "path": "/pstate/policy_data", "value": policy_data}]} if {
	count(sandbox_violations) == 0
}

sandbox_violations contains violation("sandbox", "sandbox_pidns", policy_data.pod.share_pid, input.sandbox_pidns) if {
	object.get(input, "sandbox_pidns", false) != policy_data.pod.share_pid
}

sandbox_violations contains violation("sandbox", "kernel_modules", [], input.kernel_modules) if {
	count(field_arr(input, "kernel_modules")) > 0
}

sandbox_violations contains violation("sandbox", "guest_hook_path", "", input.guest_hook_path) if {
	object.get(input, "guest_hook_path", "") != ""
}

# --- Network --------------------------------------------------------------------------

# Addresses the host must not route the pod's traffic to or from: loopback
# and unspecified, for IPv4 and IPv6.
forbidden_address(a) if {
	a != ""
	some cidr in ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"]
	net.cidr_contains(cidr, a)
}

device_allowed(d) if d in policy_data.settings.interfaces

interface := field_obj(input, "interface")

UpdateInterfaceRequest if count(interface_violations) == 0

interface_violations contains violation("network", "interface.name", policy_data.settings.interfaces, object.get(interface, "name", "")) if {
	not device_allowed(object.get(interface, "name", ""))
}

interface_violations contains violation("network", "interface.device", policy_data.settings.interfaces, interface.device) if {
	object.get(interface, "device", "") != ""
	not device_allowed(interface.device)
}

interface_violations contains violation("network", "interface.hwAddr", "a unicast MAC address", object.get(interface, "hwAddr", "")) if {
	not regex.match("^[0-9a-f]([02468ace])(:[0-9a-f]{2}){5}$", lower(object.get(interface, "hwAddr", "")))
}

interface_violations contains violation("network", "interface.hwAddr", "a unicast MAC address", interface.hwAddr) if {
	object.get(interface, "hwAddr", "") == "00:00:00:00:00:00"
}

# IFF_NOARP (0x80) is the only flag the host may set.
interface_violations contains violation("network", "interface.raw_flags", [0, 128], flags) if {
	flags := object.get(interface, "raw_flags", 0)
	not flags in {0, 128}
}

interface_violations contains violation("network", "interface.IPAddresses", "no loopback or unspecified address", a.address) if {
	some a in field_arr(interface, "IPAddresses")
	forbidden_address(a.address)
}

routes := field_arr(field_obj(input, "routes"), "Routes")

UpdateRoutesRequest if count(route_violations) == 0

route_violations contains violation("network", sprintf("routes.Routes[%d].device", [i]), policy_data.settings.interfaces, r.device) if {
	some i, r in routes
	not device_allowed(object.get(r, "device", ""))
}

route_violations contains violation("network", sprintf("routes.Routes[%d].%s", [i, field]), "no loopback or unspecified address", r[field]) if {
	some i, r in routes
	some field in ["dest", "gateway", "source"]
	forbidden_address(regex.replace(object.get(r, field, ""), "/[0-9]+$", ""))
}

neighbors := field_arr(field_obj(input, "neighbors"), "ARPNeighbors")

AddARPNeighborsRequest if count(neighbor_violations) == 0

neighbor_violations contains violation("network", sprintf("neighbors.ARPNeighbors[%d].device", [i]), policy_data.settings.interfaces, object.get(n, "device", "")) if {
	some i, n in neighbors
	not device_allowed(object.get(n, "device", ""))
}

neighbor_violations contains violation("network", sprintf("neighbors.ARPNeighbors[%d].toIPAddress", [i]), "no loopback or unspecified address", n.toIPAddress.address) if {
	some i, n in neighbors
	forbidden_address(object.get(object.get(n, "toIPAddress", {}), "address", ""))
}

# NUD_REACHABLE (0x02) or NUD_PERMANENT (0x80).
neighbor_violations contains violation("network", sprintf("neighbors.ARPNeighbors[%d].state", [i]), [2, 128], object.get(n, "state", 0)) if {
	some i, n in neighbors
	not object.get(n, "state", 0) in {2, 128}
}

# NTF_PROXY (0x08) and NTF_ROUTER (0x80) only.
neighbor_violations contains violation("network", sprintf("neighbors.ARPNeighbors[%d].flags", [i]), "0, NTF_PROXY (8) or NTF_ROUTER (128)", f) if {
	some i, n in neighbors
	f := object.get(n, "flags", 0)
	not f in {0, 8, 128, 136}
}

# --- Explanations -------------------------------------------------------------------------

# What `ward policy check` prints for a refusal: the violations of the rule
# of that request.
violations := {
	"CreateContainerRequest": create_violations,
	"ExecProcessRequest": exec_violations,
	"CopyFileRequest": copy_violations,
	"CreateSandboxRequest": sandbox_violations,
	"UpdateInterfaceRequest": interface_violations,
	"UpdateRoutesRequest": route_violations,
	"AddARPNeighborsRequest": neighbor_violations,
}
