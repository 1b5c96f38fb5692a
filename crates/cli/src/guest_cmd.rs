//! `ward attest` and `ward get-resource`: the trial guest.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ward_guest::{Attester, ClientOptions, KbsClient, SampleAttester};
use ward_proto::ResourcePath;

use crate::sim_attesters;

#[derive(clap::Args)]
pub struct GuestArgs {
    /// KBS base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// TEE to attest as: `auto` (configfs-tsm if present: SNP or TDX; else
    /// /dev/sev-guest; else /dev/tdx_guest with the QGS; else an Azure vTPM
    /// with an HCL report), `tsm` (configfs-tsm, required), `sev-guest` (the
    /// legacy SNP device, required), `tdx-guest` (the legacy TDX device and
    /// the QGS, required), `az-vtpm` (Azure SNP or TDX confidential VM,
    /// required),
    /// `sample` (no hardware, trials only), `sim-snp` / `sim-tdx` /
    /// `sim-az-snp` (the simulator in --sim-dir).
    #[arg(long, default_value = "sample", value_parser = ["auto", "tsm", "sev-guest", "tdx-guest", "az-vtpm", "sample", "sim-snp", "sim-tdx", "sim-az-snp"])]
    pub tee: String,
    /// The legacy TDX guest device (TDX_CMD_GET_REPORT0).
    #[arg(long, default_value = ward_guest::tdx_guest::DEFAULT_DEVICE)]
    pub tdx_guest_device: PathBuf,
    /// The TDX Quote Generation Service: `vsock:<cid>:<port>` or
    /// `unix:<path>`.
    #[arg(long, default_value = "vsock:2:4050")]
    pub qgs: String,
    /// The TPM device of an Azure confidential VM.
    #[arg(long, default_value = ward_guest::az_vtpm::DEFAULT_DEVICE)]
    pub tpm_device: PathBuf,
    /// The Azure instance metadata service (VCEK, TD quotes).
    #[arg(long, default_value = ward_guest::az_vtpm::DEFAULT_IMDS)]
    pub imds_url: String,
    /// configfs-tsm report directory.
    #[arg(long, default_value = ward_guest::tsm::DEFAULT_ROOT)]
    pub tsm_root: PathBuf,
    /// The legacy SEV-SNP guest device (SNP_GET_EXT_REPORT).
    #[arg(long, default_value = ward_guest::sev_guest::DEFAULT_DEVICE)]
    pub sev_guest_device: PathBuf,
    /// Simulator directory for `--tee sim-snp` / `sim-tdx` (from `ward sim
    /// snp init` / `ward sim tdx init`).
    #[arg(long)]
    pub sim_dir: Option<PathBuf>,
    /// Launch measurement (hex, 48 bytes) the simulated guest reports
    /// (SNP MEASUREMENT, TDX MRTD).
    #[arg(long)]
    pub sim_measurement: Option<String>,
    /// Init-data to send (TOML, or the base64(gzip) annotation form); used
    /// only if the TEE binds its digest (HOST_DATA, MRCONFIGID).
    #[arg(long)]
    pub init_data: Option<PathBuf>,
    /// HOST_DATA (SNP, 32 bytes hex) or MRCONFIGID (TDX, 48 bytes hex) of
    /// the simulated or sample launch; default:
    /// the init-data digest (a launch with that init-data).
    #[arg(long)]
    pub sim_host_data: Option<String>,
    /// Extra CA certificate (PEM) to trust for the KBS.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Use an RSA-OAEP-256 TEE key instead of EC P-256.
    #[arg(long)]
    pub rsa: bool,
}

#[derive(clap::Args)]
pub struct AttestArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Also print the token's claims (decoded, not verified).
    #[arg(long)]
    pub claims: bool,
}

#[derive(clap::Args)]
pub struct GetResourceArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Resource URI, `kbs:///repo/type/tag`.
    pub uri: String,
    /// Write the plaintext here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// The init-data TOML of `--init-data`, if given.
fn init_data(a: &GuestArgs) -> Result<Option<String>> {
    let Some(p) = &a.init_data else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Some(ward_proto::initdata::read_toml_or_annotation(&text)?))
}

/// The launch-time binding a simulated or sample TEE reports: explicit, or
/// the init-data digest fitted to `len` bytes, or zero.
fn launch_binding(a: &GuestArgs, len: usize) -> Result<Vec<u8>> {
    if let Some(h) = &a.sim_host_data {
        let b = hex::decode(h.trim()).context("--sim-host-data is not hex")?;
        if b.len() != len {
            bail!("--sim-host-data must be {len} bytes");
        }
        return Ok(b);
    }
    Ok(match init_data(a)? {
        Some(t) => ward_proto::initdata::InitData::parse("toml", &t)?.digest_for_field(len),
        None => vec![0; len],
    })
}

fn qgs(a: &GuestArgs) -> Result<ward_guest::tdx_guest::QgsAddress> {
    ward_guest::tdx_guest::QgsAddress::parse(&a.qgs).map_err(|e| anyhow::anyhow!("--qgs {e}"))
}

/// `--sim-measurement` as 48 bytes (zero when absent).
fn sim_measurement(a: &GuestArgs) -> Result<[u8; 48]> {
    let mut m = [0u8; 48];
    if let Some(s) = &a.sim_measurement {
        let b = hex::decode(s.trim()).context("--sim-measurement is not hex")?;
        if b.len() != 48 {
            bail!("--sim-measurement must be 48 bytes");
        }
        m.copy_from_slice(&b);
    }
    Ok(m)
}

/// Pick the attester: the sample or a simulator (here), or hardware
/// ([`ward_guest::select`], which owns the detection order).
fn attester(a: &GuestArgs) -> Result<Arc<dyn Attester>> {
    let sim_dir = |what: &str| {
        a.sim_dir.as_deref().with_context(|| {
            format!(
                "--tee {} needs --sim-dir (see `ward sim {what} init`)",
                a.tee
            )
        })
    };
    match a.tee.as_str() {
        "sample" => Ok(Arc::new(SampleAttester {
            init_data: (a.init_data.is_some() || a.sim_host_data.is_some())
                .then(|| launch_binding(a, 32))
                .transpose()?,
        })),
        "sim-snp" => sim_attesters::snp(
            sim_dir("snp")?,
            sim_measurement(a)?,
            &launch_binding(a, 32)?,
        ),
        "sim-tdx" => sim_attesters::tdx(
            sim_dir("tdx")?,
            sim_measurement(a)?,
            &launch_binding(a, 48)?,
        ),
        "sim-az-snp" => {
            // Azure binds init-data in PCR 8 (the launch extends it once).
            let digest = init_data(a)?
                .map(|t| ward_proto::initdata::InitData::parse("toml", &t).map(|d| d.digest))
                .transpose()?;
            sim_attesters::az_snp(sim_dir("snp")?, sim_measurement(a)?, digest.as_deref())
        }
        other => {
            let choice = ward_guest::select::Choice::parse(other)
                .with_context(|| format!("TEE {other:?} is not supported by this build"))?;
            let devices = ward_guest::select::Devices {
                tsm_root: a.tsm_root.clone(),
                sev_guest: a.sev_guest_device.clone(),
                tdx_guest: a.tdx_guest_device.clone(),
                qgs: qgs(a)?,
                tpm: a.tpm_device.clone(),
                imds_url: a.imds_url.clone(),
            };
            Ok(ward_guest::select::select(choice, &devices)?)
        }
    }
}

pub fn client(a: &GuestArgs) -> Result<KbsClient> {
    let ca = a
        .cacert
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let opts = ClientOptions {
        ca_cert_pem: ca,
        rsa_key: a.rsa,
        init_data: init_data(a)?,
        ..Default::default()
    };
    Ok(KbsClient::new(&a.url, attester(a)?, opts)?)
}

pub async fn attest(a: AttestArgs) -> Result<()> {
    let c = client(&a.guest)?;
    let token = c.attest().await?;
    if a.claims {
        let t = ward_proto::jwt::UnverifiedJwt::parse(&token)?;
        println!("{}", serde_json::to_string_pretty(&t.claims)?);
    } else {
        println!("{token}");
    }
    Ok(())
}

pub async fn get_resource(a: GetResourceArgs) -> Result<()> {
    let path = ResourcePath::parse_uri(&a.uri)?;
    let c = client(&a.guest)?;
    let data = c.get_resource(&path).await?;
    match &a.output {
        Some(p) => std::fs::write(p, &data).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(&data)?,
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct GuestServeArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Local API address; must be loopback.
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: std::net::SocketAddr,
    /// Overall deadline, in seconds, of a call that needs the KBS
    /// (attestation, retries and fetch together); past it the call answers
    /// 504 KbsTimeout.
    #[arg(long, default_value_t = 5.0, value_parser = positive_secs)]
    pub deadline_secs: f64,
}

fn positive_secs(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.01 and 3600"
        )),
    }
}

#[derive(clap::Subcommand)]
pub enum GuestCmd {
    /// Serve the local API for containers: /aa/token, /aa/evidence,
    /// /cdh/resource/<repo>/<type>/<tag>, /healthz.
    Serve(GuestServeArgs),
}

pub async fn run(cmd: GuestCmd) -> Result<()> {
    let GuestCmd::Serve(a) = cmd;
    // Refused before anything is bound or said to listen.
    if !a.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the guest API on {}: it must listen on a loopback address (127.0.0.1, ::1)",
            a.listen
        );
    }
    let client = client(&a.guest)?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, kbs = %a.guest.url, tee = %a.guest.tee, "ward guest API listening");
    println!("listening on {addr}");
    ward_guest::api::serve(
        listener,
        ward_guest::api::GuestApi::new(client)
            .with_deadline(std::time::Duration::from_secs_f64(a.deadline_secs)),
        ward_guest::api::limits(),
        ward_kbs::serve::shutdown_signal(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

#[derive(clap::Subcommand)]
pub enum InitDataCmd {
    /// Print the digest of an init-data document (its own algorithm), and
    /// the values SNP HOST_DATA / TDX MRCONFIGID / vTPM PCR8 must hold.
    Digest { file: PathBuf },
    /// TOML → the Kata annotation form (base64 of gzip).
    Encode { file: PathBuf },
    /// The annotation form (or TOML) → TOML.
    Decode { file: PathBuf },
}

pub fn initdata(cmd: InitDataCmd) -> Result<()> {
    use ward_proto::initdata::{encode_annotation, read_toml_or_annotation, InitData};
    match cmd {
        InitDataCmd::Digest { file } => {
            let text = read_toml_or_annotation(&String::from_utf8(crate::read_input(&file)?)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::policy_cmd::digests(&text)?)?
            );
        }
        InitDataCmd::Encode { file } => {
            let text = String::from_utf8(crate::read_input(&file)?)?;
            InitData::parse("toml", &text)?;
            println!("{}", encode_annotation(&text)?);
        }
        InitDataCmd::Decode { file } => {
            let text = read_toml_or_annotation(&String::from_utf8(crate::read_input(&file)?)?)?;
            print!("{text}");
        }
    }
    Ok(())
}
