//! `ward attest` and `ward get-resource`: the trial guest.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ward_guest::{Attester, ClientOptions, KbsClient, SampleAttester};
use ward_proto::ResourcePath;

#[derive(clap::Args)]
pub struct GuestArgs {
    /// KBS base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// TEE to attest as.
    #[arg(long, default_value = "sample", value_parser = ["sample"])]
    pub tee: String,
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

fn attester(tee: &str) -> Result<Arc<dyn Attester>> {
    match tee {
        "sample" => Ok(Arc::new(SampleAttester)),
        other => bail!("TEE {other:?} is not supported by this build"),
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
        ..Default::default()
    };
    Ok(KbsClient::new(&a.url, attester(&a.tee)?, opts)?)
}

pub async fn attest(a: AttestArgs) -> Result<()> {
    let mut c = client(&a.guest)?;
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
    let mut c = client(&a.guest)?;
    let data = c.get_resource(&path).await?;
    match &a.output {
        Some(p) => std::fs::write(p, &data).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(&data)?,
    }
    Ok(())
}
