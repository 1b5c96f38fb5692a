//! `ward admin`: a client of the admin API.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Subcommand;
use serde_json::{json, Value};
use ward_proto::ResourcePath;

/// Where the trust service is and how to authenticate to its admin API.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Trust service base URL.
    #[arg(long, env = "WARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token (JWT). Default: read from --token-file.
    #[arg(long, env = "WARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token; default `<data-dir>/admin/admin-token`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Data directory of a local `ward serve` (for the default token file).
    #[arg(long, default_value = "ward-data")]
    data_dir: PathBuf,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long)]
    cacert: Option<PathBuf>,
}

/// How long one admin request may take, connection included.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl ServerArgs {
    /// A client of the admin API with the token.
    pub(crate) fn api(&self) -> Result<Api> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let p = self
                    .token_file
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("admin").join("admin-token"));
                std::fs::read_to_string(&p)
                    .with_context(|| {
                        format!(
                            "reading the admin token {} (pass --token or --token-file)",
                            p.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT);
        if let Some(p) = &self.cacert {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Api {
            http: b.build()?,
            url: self.url.trim_end_matches('/').to_string(),
            token,
        })
    }
}

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    cmd: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Resources (secrets).
    #[command(subcommand)]
    Resource(ResourceCmd),
    /// The resource policy (Rego, package `policy`, rule `allow`).
    #[command(subcommand)]
    ResourcePolicy(ResourcePolicyCmd),
    /// Attestation policies (Rego, package `policy`, trust-vector rules).
    #[command(subcommand)]
    AttestationPolicy(AttestationPolicyCmd),
    /// Reference values that attestation policies read as `data.reference`.
    #[command(subcommand)]
    ReferenceValue(ReferenceValueCmd),
    /// Verification collateral kept in the store (Intel TCB info, QE
    /// identity and CRLs per FMSPC; cached AMD VCEKs).
    #[command(subcommand)]
    Collateral(CollateralCmd),
    /// Rotate a key ring (`session`, `token-signing` or `audit`).
    RotateKey { ring: String },
    /// Replace the bootstrap admin key and token under `--data-dir`
    /// (offline, on the server's host). The server trusts the new key, and
    /// refuses the old token, from its next admin request on.
    RotateBootstrap {
        /// Lifetime of the new bootstrap token, seconds (one year).
        #[arg(long, default_value_t = 365 * 24 * 3600)]
        lifetime: i64,
    },
    /// Mint an admin token with a private key (offline; prints the token).
    Token {
        /// PKCS#8 P-256 private key (PEM), e.g. `<data-dir>/admin/admin-key.pem`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "admin", value_parser = ["admin", "resource-admin", "policy-admin", "auditor"])]
        role: String,
        #[arg(long, default_value = "ward-admin")]
        subject: String,
        /// Lifetime in seconds (the server refuses tokens living longer
        /// than its `[admin] max_token_lifetime_secs`, default one day). A
        /// negative lifetime mints an already expired token, for tests.
        #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
        lifetime: i64,
    },
}

#[derive(Subcommand)]
enum CollateralCmd {
    /// Import Intel collateral (the flat JSON form: tcb_info, qe_identity,
    /// their signatures and issuer chains, pck_crl, root_ca_crl).
    Import { file: PathBuf },
    /// List stored collateral (kind, key, fetch time).
    List,
}

#[derive(Subcommand)]
enum ResourceCmd {
    /// Store a resource from a file (`-` for standard input).
    Put {
        uri: String,
        file: PathBuf,
    },
    /// Show a resource's metadata (never its content).
    GetMetadata {
        uri: String,
    },
    Delete {
        uri: String,
    },
    List,
}

#[derive(Subcommand)]
enum ResourcePolicyCmd {
    /// Set the default resource policy, or the one bound to `--prefix`.
    Set {
        /// Bind the policy to a resource-path prefix (`repo`, `repo/type`
        /// or `repo/type/tag`): the longest bound prefix of a path decides
        /// it, other paths keep the default policy.
        #[arg(long)]
        prefix: Option<String>,
        file: PathBuf,
    },
    /// Show the default resource policy (built in, if none is set), or the
    /// one bound to `--prefix`.
    Show {
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Unbind the policy of a prefix; its paths fall back to a shorter
    /// prefix's policy or the default one.
    Delete { prefix: String },
    /// The stored resource policies (`prefix` null for the default one).
    List,
}

#[derive(Subcommand)]
enum AttestationPolicyCmd {
    Set {
        /// Policy id: a TEE name (`sample`, `snp`, …) or `default`.
        #[arg(long)]
        id: String,
        file: PathBuf,
    },
    Show {
        id: String,
    },
    Delete {
        id: String,
    },
    List,
}

#[derive(Subcommand)]
enum ReferenceValueCmd {
    /// Set the accepted values of a name (strings; `--json` to pass JSON values).
    Set {
        name: String,
        values: Vec<String>,
        #[arg(long)]
        json: bool,
        /// Expiry, RFC 3339.
        #[arg(long)]
        expires: Option<String>,
    },
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
    List,
}

pub(crate) struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        json_ct: bool,
    ) -> Result<Value> {
        let text = self.call_text(method, path, body, json_ct).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path`: the answer's text.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String> {
        self.call_text(reqwest::Method::GET, path, None, false)
            .await
    }

    async fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        json_ct: bool,
    ) -> Result<String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.body(b);
            req = req.header(
                reqwest::header::CONTENT_TYPE,
                if json_ct {
                    "application/json"
                } else {
                    "application/octet-stream"
                },
            );
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            bail!("{status}: {detail}");
        }
        Ok(text)
    }

    async fn post_json(&self, path: &str, v: &Value) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(serde_json::to_vec(v)?.into()),
            true,
        )
        .await
    }
}

fn print(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn resource(uri: &str) -> Result<ResourcePath> {
    Ok(ResourcePath::parse_uri(uri)?)
}

pub async fn run(a: AdminArgs) -> Result<()> {
    if let AdminCmd::RotateBootstrap { lifetime } = &a.cmd {
        let p = ward_kbs::bootstrap::rotate_bootstrap(&a.server.data_dir, *lifetime, crate::now())
            .map_err(|e| anyhow::anyhow!(e))?;
        println!("{}", p.display());
        return Ok(());
    }
    if let AdminCmd::Token {
        key,
        role,
        subject,
        lifetime,
    } = &a.cmd
    {
        let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let t = ward_kbs::bootstrap::mint_admin_token(&pem, role, subject, crate::now(), *lifetime)
            .map_err(|e| anyhow::anyhow!(e))?;
        println!("{t}");
        return Ok(());
    }
    let api = a.server.api()?;
    use reqwest::Method;
    match a.cmd {
        AdminCmd::Resource(ResourceCmd::Put { uri, file }) => {
            let p = resource(&uri)?;
            let data = crate::read_input(&file)?;
            print(
                &api.call(
                    Method::POST,
                    &format!("/kbs/v0/resource/{p}"),
                    Some(data.into()),
                    false,
                )
                .await?,
            )
        }
        AdminCmd::Resource(ResourceCmd::GetMetadata { uri }) => {
            let p = resource(&uri)?;
            print(
                &api.call(
                    Method::GET,
                    &format!("/kbs/v0/admin/resources/{p}"),
                    None,
                    false,
                )
                .await?,
            )
        }
        AdminCmd::Resource(ResourceCmd::Delete { uri }) => {
            let p = resource(&uri)?;
            print(
                &api.call(
                    Method::DELETE,
                    &format!("/kbs/v0/resource/{p}"),
                    None,
                    false,
                )
                .await?,
            )
        }
        AdminCmd::Resource(ResourceCmd::List) => print(
            &api.call(Method::GET, "/kbs/v0/admin/resources", None, false)
                .await?,
        ),
        AdminCmd::ResourcePolicy(ResourcePolicyCmd::Set { prefix, file }) => {
            let text = crate::read_input(&file)?;
            let mut body = json!({"policy": URL_SAFE_NO_PAD.encode(text)});
            if let Some(p) = prefix {
                body["prefix"] = json!(p);
            }
            print(&api.post_json("/kbs/v0/resource-policy", &body).await?)
        }
        AdminCmd::ResourcePolicy(ResourcePolicyCmd::Show { prefix }) => {
            let uri = match prefix {
                Some(p) => format!("/kbs/v0/resource-policy/{}", p.trim_matches('/')),
                None => "/kbs/v0/resource-policy".to_string(),
            };
            show_policy(&api.call(Method::GET, &uri, None, false).await?)
        }
        AdminCmd::ResourcePolicy(ResourcePolicyCmd::Delete { prefix }) => print(
            &api.call(
                Method::DELETE,
                &format!("/kbs/v0/resource-policy/{}", prefix.trim_matches('/')),
                None,
                false,
            )
            .await?,
        ),
        AdminCmd::ResourcePolicy(ResourcePolicyCmd::List) => print(
            &api.call(Method::GET, "/kbs/v0/resource-policies", None, false)
                .await?,
        ),
        AdminCmd::AttestationPolicy(AttestationPolicyCmd::Set { id, file }) => {
            let text = crate::read_input(&file)?;
            let body =
                json!({"policy_id": id, "policy": URL_SAFE_NO_PAD.encode(text), "type": "rego"});
            print(&api.post_json("/kbs/v0/attestation-policy", &body).await?)
        }
        AdminCmd::AttestationPolicy(AttestationPolicyCmd::Show { id }) => show_policy(
            &api.call(
                Method::GET,
                &format!("/kbs/v0/attestation-policy/{id}"),
                None,
                false,
            )
            .await?,
        ),
        AdminCmd::AttestationPolicy(AttestationPolicyCmd::Delete { id }) => print(
            &api.call(
                Method::DELETE,
                &format!("/kbs/v0/attestation-policy/{id}"),
                None,
                false,
            )
            .await?,
        ),
        AdminCmd::AttestationPolicy(AttestationPolicyCmd::List) => print(
            &api.call(Method::GET, "/kbs/v0/attestation-policies", None, false)
                .await?,
        ),
        AdminCmd::ReferenceValue(ReferenceValueCmd::Set {
            name,
            values,
            json,
            expires,
        }) => {
            let values = values
                .iter()
                .map(|v| {
                    if json {
                        serde_json::from_str(v).with_context(|| format!("{v:?} is not JSON"))
                    } else {
                        Ok(Value::String(v.clone()))
                    }
                })
                .collect::<Result<Vec<Value>>>()?;
            let expires_at = expires.as_deref().map(crate::parse_time).transpose()?;
            print(
                &api.post_json(
                    "/kbs/v0/reference-value",
                    &json!({"name": name, "values": values, "expires_at": expires_at}),
                )
                .await?,
            )
        }
        AdminCmd::ReferenceValue(ReferenceValueCmd::Get { name }) => print(
            &api.call(
                Method::GET,
                &format!("/kbs/v0/reference-value/{name}"),
                None,
                false,
            )
            .await?,
        ),
        AdminCmd::ReferenceValue(ReferenceValueCmd::Delete { name }) => print(
            &api.call(
                Method::DELETE,
                &format!("/kbs/v0/reference-value/{name}"),
                None,
                false,
            )
            .await?,
        ),
        AdminCmd::ReferenceValue(ReferenceValueCmd::List) => print(
            &api.call(Method::GET, "/kbs/v0/reference-values", None, false)
                .await?,
        ),
        AdminCmd::Collateral(CollateralCmd::Import { file }) => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            print(
                &api.call(Method::POST, "/kbs/v0/collateral", Some(text.into()), true)
                    .await?,
            )
        }
        AdminCmd::Collateral(CollateralCmd::List) => print(
            &api.call(Method::GET, "/kbs/v0/collateral", None, false)
                .await?,
        ),
        AdminCmd::RotateKey { ring } => print(
            &api.post_json("/kbs/v0/admin/rotate-key", &json!({"ring": ring}))
                .await?,
        ),
        AdminCmd::Token { .. } | AdminCmd::RotateBootstrap { .. } => {
            anyhow::bail!("offline command, handled before contacting the server")
        }
    }
}

fn show_policy(v: &Value) -> Result<()> {
    let text = v
        .get("policy")
        .and_then(Value::as_str)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .context("the answer carries no policy text")?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}
