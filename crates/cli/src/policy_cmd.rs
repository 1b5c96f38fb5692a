//! `ward policy`: the workload owner's side of the agent policy.
//!
//! * `generate` reads pod YAML, resolves every image (a registry over the
//!   OCI distribution API, or an OCI image layout given with
//!   `--image-layout REF=DIR`), generates the policy of each pod template,
//!   wraps it in an init-data document and writes the YAML back with the
//!   init-data annotation on each template. The output is written by temp
//!   file and rename: on any failure nothing is written.
//! * `check` decides agent requests against a policy and says why a
//!   refusal happened; it exits 1 on any refusal.
//! * `explain` summarises a policy for review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use ward_oci::{Layout, Platform, Reference};
use ward_podpolicy::annotate::{annotate, Edit};
use ward_podpolicy::container::{parse_group, parse_passwd, ImageConfig};
use ward_podpolicy::engine::AgentPolicy;
use ward_podpolicy::generate::{self, ImageInfo, Options};
use ward_podpolicy::{Objects, Settings};
use ward_proto::initdata::{encode_annotation, read_toml_or_annotation, InitData};

/// The init-data annotation the Kata runtime passes to the guest.
const INIT_DATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The policy annotation of older runtimes (base64 of the policy text).
const LEGACY_POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Generate the agent policy and init-data of every pod template in
    /// Kubernetes YAML, and annotate the templates with it.
    Generate(Box<GenerateArgs>),
    /// Decide agent requests against a policy (Rego, annotated YAML or
    /// init-data); exits 1 if any is refused.
    Check(CheckArgs),
    /// Summarise a policy for review: containers, images, execs, mounts.
    Explain {
        /// Rego, annotated YAML, init-data TOML or its annotation form.
        #[arg(long, short)]
        policy: PathBuf,
    },
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Kubernetes YAML (multi-document); repeatable.
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    /// More YAML with the ConfigMaps and Secrets the pods reference.
    #[arg(short = 'c', long = "config-file")]
    config_files: Vec<PathBuf>,
    /// Where to write the annotated YAML (default: the single -f file, in
    /// place).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print the policy text of each template instead of writing YAML.
    #[arg(long)]
    print_policy: bool,
    /// Generator settings (JSON or TOML); the built-in default matches
    /// containerd with Kata pulling images in the guest.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// A directory of settings drop-ins (JSON merge patches, name order).
    #[arg(long)]
    settings_dir: Option<PathBuf>,
    /// The KBS the guest attests to, written into aa.toml and cdh.toml.
    #[arg(long)]
    kbs_url: Option<String>,
    /// The KBS's CA certificate (PEM), written beside the URL.
    #[arg(long)]
    kbs_cert: Option<PathBuf>,
    /// The init-data digest algorithm.
    #[arg(long, default_value = "sha256", value_parser = ["sha256", "sha384"])]
    algorithm: String,
    /// Also put the policy into io.katacontainers.config.agent.policy,
    /// for runtimes older than init-data.
    #[arg(long)]
    legacy_policy_annotation: bool,
    /// A command `kubectl exec` may run in every container
    /// (space-separated arguments); repeatable.
    #[arg(long = "allow-exec")]
    allow_exec: Vec<String>,
    /// Let the host read container logs (ReadStream).
    #[arg(long)]
    allow_logs: bool,
    /// Take image REF from the OCI image layout DIR (REF=DIR); repeatable.
    #[arg(long = "image-layout", value_name = "REF=DIR")]
    image_layouts: Vec<String>,
    /// Take image REF from a `docker save` archive (REF=FILE.tar, Docker 25
    /// or later: an OCI layout inside); repeatable.
    #[arg(long = "image-archive", value_name = "REF=FILE")]
    image_archives: Vec<String>,
    /// A registry reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
    /// Fetch images of REGISTRY from MIRROR (REGISTRY=MIRROR); repeatable.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=MIRROR")]
    mirrors: Vec<String>,
    /// Docker config.json with registry credentials.
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// The platform an image index is resolved for.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Cache of per-layer results (default: $XDG_CACHE_HOME/ward/layers).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Deadline of each registry request, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Also pin each layer's dm-verity root hash over its tarfs image, for
    /// runtimes that mount layers that way (AKS-style tardev): none or
    /// dm-verity.
    #[arg(long, default_value = "none", value_parser = ["none", "dm-verity"])]
    layer_integrity: String,
    /// Accept fields and kinds the generator does not know.
    #[arg(long)]
    allow_unknown_fields: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Rego, annotated YAML, init-data TOML or its annotation form.
    #[arg(long, short)]
    policy: PathBuf,
    /// The request kind, e.g. CreateContainerRequest (with --request).
    #[arg(long, requires = "request")]
    kind: Option<String>,
    /// One request (the JSON the agent passes as input).
    #[arg(long, requires = "kind")]
    request: Option<PathBuf>,
    /// JSON lines of {"kind", "request"}, decided in order against one
    /// policy state, as the agent does.
    #[arg(long, conflicts_with_all = ["kind", "request"])]
    requests: Option<PathBuf>,
}

pub fn run(cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Generate(a) => generate_cmd(*a),
        PolicyCmd::Check(a) => check_cmd(a),
        PolicyCmd::Explain { policy } => explain_cmd(&policy),
    }
}

fn read_text(p: &Path) -> Result<String> {
    String::from_utf8(crate::read_input(p)?).with_context(|| format!("{}: not UTF-8", p.display()))
}

/// Resolves images: from layouts named on the command line, else from
/// registries.
struct Images {
    layouts: BTreeMap<String, PathBuf>,
    /// Archives by reference, unpacked on first use into `unpacked`.
    archives: BTreeMap<String, PathBuf>,
    unpacked: Option<tempfile::TempDir>,
    registry: Option<ward_oci::registry::Registry>,
    opts: ward_oci::registry::Options,
}

impl Images {
    fn new(a: &GenerateArgs) -> Result<Self> {
        let mut layouts = BTreeMap::new();
        for l in &a.image_layouts {
            let (r, d) = l
                .split_once('=')
                .ok_or_else(|| anyhow!("--image-layout {l:?}: expected REF=DIR"))?;
            layouts.insert(r.to_string(), PathBuf::from(d));
        }
        let mut archives = BTreeMap::new();
        for l in &a.image_archives {
            let (r, f) = l
                .split_once('=')
                .ok_or_else(|| anyhow!("--image-archive {l:?}: expected REF=FILE"))?;
            archives.insert(r.to_string(), PathBuf::from(f));
        }
        let mut opts = ward_oci::registry::Options {
            insecure: a.insecure.clone(),
            timeout: Duration::from_secs(a.timeout_secs),
            platform: Platform::parse(&a.platform).ok_or_else(|| {
                anyhow!("--platform {:?}: expected os/arch[/variant]", a.platform)
            })?,
            ..Default::default()
        };
        for m in &a.mirrors {
            let (r, to) = m
                .split_once('=')
                .ok_or_else(|| anyhow!("--registry-mirror {m:?}: expected REGISTRY=MIRROR"))?;
            opts.mirrors.insert(r.to_string(), to.to_string());
        }
        // Credentials as docker finds them: --docker-config, else
        // $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
        let default_config = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .map(|d| d.join("config.json"))
            .filter(|p| p.exists());
        if let Some(p) = a.docker_config.clone().or(default_config) {
            opts.credentials = ward_oci::registry::Credentials::from_docker_config(&p)?;
        }
        let cache_dir = a.cache_dir.clone().or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("ward/layers"))
        });
        opts.cache = cache_dir.map(|d| ward_oci::LayerCache::new(&d));
        opts.integrity = a.layer_integrity == "dm-verity";
        opts.progress = progress_bars();
        Ok(Self {
            layouts,
            archives,
            unpacked: None,
            registry: None,
            opts,
        })
    }

    fn resolve(&mut self, written: &str) -> Result<ImageInfo> {
        let r = Reference::parse(written)?;
        let from_archive = match self.archives.get(written) {
            Some(f) => {
                if self.unpacked.is_none() {
                    self.unpacked = Some(tempfile::tempdir()?);
                }
                // One directory per archive, named by its position.
                let base = self.unpacked.as_ref().expect("set above").path();
                let n = self.archives.keys().position(|k| k == written).unwrap_or(0);
                Some(ward_oci::archive::open(f, &base.join(n.to_string()))?)
            }
            None => None,
        };
        let layout = match (from_archive, self.layouts.get(written)) {
            (Some(l), _) => Some(l),
            (None, Some(dir)) => Some(Layout::open(dir)?),
            (None, None) => None,
        };
        let meta = if let Some(mut layout) = layout {
            if let Some(c) = &self.opts.cache {
                layout = layout.with_cache(c.clone());
            }
            layout = layout.with_integrity(self.opts.integrity);
            if let Some(p) = &self.opts.progress {
                layout = layout.with_progress(p.clone());
            }
            layout.image(r.tag.as_deref(), &self.opts.platform)?
        } else {
            if self.registry.is_none() {
                self.registry = Some(ward_oci::registry::Registry::new(self.opts.clone())?);
            }
            self.registry.as_ref().expect("set above").image(&r)?
        };
        if let Some(pinned) = &r.digest {
            if *pinned != meta.manifest_digest {
                bail!(
                    "{written}: the source's manifest is {}, not the pinned digest",
                    meta.manifest_digest
                );
            }
        }
        if r.is_floating() {
            eprintln!(
                "warning: {written} names the tag latest and no digest; the policy pins {} as resolved now",
                meta.manifest_digest
            );
        }
        let text = |b: &Option<Vec<u8>>| {
            String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
        };
        let config = ImageConfig {
            env: meta.env,
            entrypoint: meta.entrypoint,
            cmd: meta.cmd,
            working_dir: meta.working_dir,
            user: meta.user,
            passwd: parse_passwd(&text(&meta.user_databases.passwd)),
            group: parse_group(&text(&meta.user_databases.group)),
            volumes: meta.volumes,
        };
        let name = format!("{}/{}", r.registry, r.repository);
        let mut info = ImageInfo::new(
            written,
            &name,
            r.tag.as_deref(),
            &meta.manifest_digest.to_string(),
            config,
        );
        info.layer_roots = meta
            .layer_integrity
            .iter()
            .map(|l| hex::encode(l.root_hash))
            .collect();
        Ok(info)
    }
}

/// A progress bar per layer being read, on a terminal only.
fn progress_bars() -> Option<ward_oci::layout::Progress> {
    use std::io::IsTerminal;
    use std::sync::{Arc, Mutex};
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .ok()?
    .progress_chars("=> ");
    let bars: Mutex<BTreeMap<String, indicatif::ProgressBar>> = Mutex::new(BTreeMap::new());
    Some(ward_oci::layout::Progress(Arc::new(
        move |d, done, total| {
            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
            let bar = bars.entry(d.to_string()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(total));
                b.set_style(style.clone());
                b.set_prefix(d.to_string().chars().take(19).collect::<String>());
                b
            });
            bar.set_position(done);
            if done >= total {
                bar.finish();
            }
        },
    )))
}

/// The init-data TOML of one policy: keys in a fixed order, so the same
/// policy and KBS give the same bytes (and digest) everywhere.
fn init_data(policy: &str, a: &GenerateArgs) -> Result<String> {
    let mut data = BTreeMap::new();
    data.insert("policy.rego".to_string(), policy.to_string());
    if let Some(url) = &a.kbs_url {
        let cert = match &a.kbs_cert {
            Some(p) => read_text(p)?,
            None => String::new(),
        };
        let mut aa = toml::Table::new();
        let mut kbs = toml::Table::new();
        kbs.insert("url".into(), url.clone().into());
        if !cert.is_empty() {
            kbs.insert("cert".into(), cert.clone().into());
        }
        let mut tc = toml::Table::new();
        tc.insert("kbs".into(), kbs.into());
        aa.insert("token_configs".into(), tc.into());
        let mut cdh = toml::Table::new();
        cdh.insert(
            "socket".into(),
            "unix:///run/confidential-containers/cdh.sock".into(),
        );
        let mut kbc = toml::Table::new();
        kbc.insert("name".into(), "cc_kbc".into());
        kbc.insert("url".into(), url.clone().into());
        if !cert.is_empty() {
            kbc.insert("kbs_cert".into(), cert.into());
        }
        cdh.insert("kbc".into(), kbc.into());
        data.insert("aa.toml".into(), toml::to_string(&aa)?);
        data.insert("cdh.toml".into(), toml::to_string(&cdh)?);
    }
    let mut doc = toml::Table::new();
    doc.insert("version".into(), "0.1.0".into());
    doc.insert("algorithm".into(), a.algorithm.clone().into());
    let mut d = toml::Table::new();
    for (k, v) in data {
        d.insert(k, v.into());
    }
    doc.insert("data".into(), d.into());
    Ok(toml::to_string(&doc)?)
}

/// The init-data digest and the values SNP HOST_DATA, TDX MRCONFIGID and
/// a vTPM's PCR8 hold for it.
pub(crate) fn digests(toml_text: &str) -> Result<Value> {
    let d = InitData::parse("toml", toml_text)?;
    let mut pcr = vec![0u8; 32];
    pcr.extend_from_slice(&d.digest);
    Ok(json!({
        "algorithm": d.algorithm.name(),
        "digest": hex::encode(&d.digest),
        "snp_host_data": hex::encode(d.digest_for_field(32)),
        "tdx_mrconfigid": hex::encode(d.digest_for_field(48)),
        "vtpm_pcr8": hex::encode(ward_proto::hash::sha256(&pcr)),
    }))
}

fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let settings = Settings::load(a.settings.as_deref(), a.settings_dir.as_deref())?;
    let mut objects = Objects::default();
    let mut sources = vec![];
    for f in &a.files {
        let (name, text) = (f.display().to_string(), read_text(f)?);
        objects.add_yaml(&name, &text)?;
        sources.push((name, text));
    }
    for f in &a.config_files {
        objects.add_yaml(&f.display().to_string(), &read_text(f)?)?;
    }
    if objects.templates.is_empty() {
        bail!("no pod template in the input (Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, ReplicationController or List)");
    }
    let output = match (&a.output, a.files.as_slice()) {
        (Some(o), _) => Some(o.clone()),
        (None, [one]) if one.as_os_str() != "-" => Some(one.clone()),
        _ if a.print_policy => None,
        _ => bail!("several inputs: say where the annotated YAML goes with -o"),
    };
    let options = Options {
        allow_exec: a
            .allow_exec
            .iter()
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .collect(),
        allow_logs: a.allow_logs,
        allow_unknown_fields: a.allow_unknown_fields,
    };
    let mut images = Images::new(&a)?;
    let mut resolved = BTreeMap::new();
    for t in &objects.templates {
        let doc = &objects.documents[t.document].object;
        let spec = t.in_document(doc).and_then(|v| v.get("spec"));
        for list in ["initContainers", "containers"] {
            for c in spec
                .and_then(|s| s.get(list))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(img) = c.get("image").and_then(Value::as_str) {
                    if !resolved.contains_key(img) {
                        let info = images
                            .resolve(img)
                            .with_context(|| format!("image {img}"))?;
                        resolved.insert(img.to_string(), info);
                    }
                }
            }
        }
    }
    let mut docs: Vec<Value> = objects.documents.iter().map(|d| d.object.clone()).collect();
    let mut edits: Vec<(usize, Edit)> = vec![];
    let mut report = vec![];
    for t in &objects.templates {
        let spec = t
            .in_document(&objects.documents[t.document].object)
            .and_then(|v| v.get("spec"));
        if spec.and_then(|s| s.get("runtimeClassName")).is_none() {
            eprintln!(
                "warning: {} {} names no runtimeClassName: it would run outside a confidential VM",
                t.kind, t.name
            );
        }
        let data = generate::policy_data(&objects, t, &settings, &resolved, &options)?;
        let policy = generate::policy_text(&data);
        if a.print_policy {
            print!("{policy}");
            continue;
        }
        let toml_text = init_data(&policy, &a)?;
        let mut annotations = vec![(INIT_DATA_ANNOTATION, encode_annotation(&toml_text)?)];
        if a.legacy_policy_annotation {
            annotations.push((
                LEGACY_POLICY_ANNOTATION,
                base64::engine::general_purpose::STANDARD.encode(&policy),
            ));
        }
        // The document's position among those of its file.
        let source = &objects.documents[t.document].source_name;
        let ordinal = objects.documents[..t.document]
            .iter()
            .filter(|d| &d.source_name == source)
            .count();
        edits.push((
            t.document,
            Edit {
                document: ordinal,
                pointer: t.pointer.clone(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            },
        ));
        let template = docs[t.document]
            .pointer_mut(&t.pointer)
            .ok_or_else(|| anyhow!("{}: template moved", t.pointer))?;
        let meta = template
            .as_object_mut()
            .ok_or_else(|| anyhow!("{}: not a mapping", t.pointer))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let ann = meta
            .as_object_mut()
            .ok_or_else(|| anyhow!("{}/metadata: not a mapping", t.pointer))?
            .entry("annotations")
            .or_insert_with(|| json!({}));
        for (k, v) in annotations {
            ann.as_object_mut()
                .ok_or_else(|| anyhow!("{}/metadata/annotations: not a mapping", t.pointer))?
                .insert(k.to_string(), Value::String(v));
        }
        let mut d = digests(&toml_text)?;
        d["template"] = json!(format!("{} {}", t.kind, t.name));
        report.push(d);
    }
    if a.print_policy {
        return Ok(());
    }
    // Each input file's text with its templates annotated in place.
    let mut yaml = String::new();
    for (name, text) in &sources {
        let of_file: Vec<usize> = (0..objects.documents.len())
            .filter(|&i| &objects.documents[i].source_name == name)
            .collect();
        let mine: Vec<Edit> = edits
            .iter()
            .filter(|(d, _)| of_file.contains(d))
            .map(|(_, e)| e.clone())
            .collect();
        let expected = |k: usize| of_file.get(k).map(|&i| docs[i].clone());
        if !yaml.is_empty() {
            yaml.push_str("---\n");
        }
        yaml.push_str(&annotate(text, &mine, &expected));
    }
    let out = output.expect("checked above");
    crate::write_atomically(&out, yaml.as_bytes())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The policy text of a file holding Rego, init-data (TOML or its
/// annotation form) or YAML with either annotation.
fn load_policy(p: &Path) -> Result<String> {
    let text = read_text(p)?;
    let from_init_data = |t: &str| -> Result<String> {
        let d = InitData::parse("toml", t)?;
        d.data
            .get("policy.rego")
            .cloned()
            .ok_or_else(|| anyhow!("the init-data holds no policy.rego"))
    };
    // Init-data first: its TOML holds the Rego text too.
    if let Ok(t) = read_toml_or_annotation(&text) {
        if let Ok(p) = from_init_data(&t) {
            return Ok(p);
        }
    }
    if text.contains("package agent_policy") {
        return Ok(text);
    }
    let mut objects = Objects::default();
    objects.add_yaml(&p.display().to_string(), &text)?;
    for t in &objects.templates {
        let doc = &objects.documents[t.document].object;
        let ann = t
            .in_document(doc)
            .and_then(|v| v.pointer("/metadata/annotations"));
        if let Some(a) = ann
            .and_then(|a| a.get(INIT_DATA_ANNOTATION))
            .and_then(Value::as_str)
        {
            return from_init_data(&read_toml_or_annotation(a)?);
        }
        if let Some(a) = ann
            .and_then(|a| a.get(LEGACY_POLICY_ANNOTATION))
            .and_then(Value::as_str)
        {
            let b = base64::engine::general_purpose::STANDARD.decode(a.trim())?;
            return Ok(String::from_utf8(b)?);
        }
    }
    bail!(
        "{}: neither Rego (package agent_policy), init-data, nor YAML with the {INIT_DATA_ANNOTATION} annotation",
        p.display()
    )
}

fn check_cmd(a: CheckArgs) -> Result<()> {
    let mut policy = AgentPolicy::new(&load_policy(&a.policy)?)?;
    let requests: Vec<(String, Value)> = match (&a.kind, &a.request, &a.requests) {
        (Some(k), Some(r), None) => vec![(
            k.clone(),
            serde_json::from_str(&read_text(r)?)
                .with_context(|| format!("{}: not JSON", r.display()))?,
        )],
        (None, None, Some(f)) => read_text(f)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let v: Value = serde_json::from_str(l)
                    .with_context(|| format!("{} line {}: not JSON", f.display(), i + 1))?;
                let kind = v["kind"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{} line {}: no \"kind\"", f.display(), i + 1))?;
                Ok((kind.to_string(), v["request"].clone()))
            })
            .collect::<Result<_>>()?,
        _ => bail!("give --kind and --request, or --requests"),
    };
    let mut denied = 0;
    for (kind, req) in requests {
        let d = policy.check(&kind, &req)?;
        if !d.allowed {
            denied += 1;
        }
        println!(
            "{}",
            serde_json::to_string(&json!({
                "kind": kind,
                "decision": if d.allowed { "allow" } else { "deny" },
                "violations": d.violations,
            }))?
        );
    }
    if denied > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn explain_cmd(p: &Path) -> Result<()> {
    let text = load_policy(p)?;
    let data = ward_proto::initdata::agent_policy_data(&text).ok_or_else(|| {
        anyhow!(
            "{}: not a policy ward generated (no policy_data)",
            p.display()
        )
    })?;
    let containers: Vec<Value> = data["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "kind": c["kind"],
                "name": c["name"],
                "image": c["pull_sources"],
                "args": c["args"],
                "user": c["user"],
                "capabilities": c["capabilities"]["Bounding"],
                "mounts": c["mounts"].as_array().into_iter().flatten().map(|m| m["destination"].clone()).collect::<Vec<_>>(),
                "execs": c["execs"],
                "layer_roots": c["layer_roots"],
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "pod": data["pod"],
            "containers": containers,
            "logs": if data["allow_logs"] == true { "allowed" } else { "denied" },
            "always_denied": ["SetPolicyRequest", "SetIPTablesRequest", "UpdateEphemeralMountsRequest", "PullImageRequest", "StartTracingRequest", "StopTracingRequest", "exec of anything but the listed execs", "host namespaces", "hostPath volumes the pod does not declare"],
        }))?
    );
    Ok(())
}
