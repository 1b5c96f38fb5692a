//! `ward sim snp`: a simulated SEV-SNP platform for tests and demos.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_snp::report::TcbParts;
use ward_snp::Product;

#[derive(Subcommand)]
pub enum SimCmd {
    /// Simulated AMD SEV-SNP.
    #[command(subcommand)]
    Snp(SnpCmd),
    /// Simulated Intel TDX (DCAP: root, PCK chain, collateral, quotes).
    #[command(subcommand)]
    Tdx(TdxCmd),
    /// Simulated Intel SGX quotes from the same DCAP platform (`ward sim
    /// tdx init` creates it, with TDX and SGX collateral).
    #[command(subcommand)]
    Sgx(SgxCmd),
}

#[derive(Subcommand)]
pub enum SgxCmd {
    /// Produce a signed SGX quote v3 (raw bytes, or CoCo `sgx` evidence JSON).
    Quote {
        #[arg(long)]
        dir: PathBuf,
        /// MRENCLAVE, 32 bytes hex.
        #[arg(long)]
        mr_enclave: String,
        /// MRSIGNER, 32 bytes hex.
        #[arg(long, default_value = "")]
        mr_signer: String,
        /// report_data, up to 64 bytes hex (zero-padded).
        #[arg(long, default_value = "")]
        report_data: String,
        /// A debug enclave.
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, short)]
        output: PathBuf,
    },
}

fn run_sgx(cmd: SgxCmd) -> Result<()> {
    let SgxCmd::Quote {
        dir,
        mr_enclave,
        mr_signer,
        report_data,
        debug,
        json,
        output,
    } = cmd;
    let sim = ward_sim::tdx::DcapSim::load(&dir).map_err(|e| anyhow::anyhow!(e))?;
    let mut p = ward_sim::tdx::SgxParams {
        mr_enclave: padded("mr-enclave", &mr_enclave)?,
        mr_signer: padded("mr-signer", &mr_signer)?,
        report_data: padded("report-data", &report_data)?,
        ..Default::default()
    };
    if debug {
        p.attributes[0] |= 0x02;
    }
    let q = sim.sgx_quote(&p).map_err(|e| anyhow::anyhow!(e))?;
    write_quote(&output, q, json)
}

/// Write a quote raw, or as CoCo `{"quote": base64}` evidence.
fn write_quote(output: &std::path::Path, q: Vec<u8>, json: bool) -> Result<()> {
    let bytes = if json {
        serde_json::to_vec_pretty(&serde_json::json!({"quote": ward_proto::b64::std_encode(&q)}))?
    } else {
        q
    };
    std::fs::write(output, bytes).with_context(|| format!("writing {}", output.display()))
}

#[derive(Subcommand)]
pub enum TdxCmd {
    /// Create a simulated platform in a directory, write its collateral
    /// (valid 30 days) to `<dir>/collateral/`, and print the `[dcap]`
    /// configuration that trusts it.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// List the platform's PCK certificate in its CRL (to test revocation).
        #[arg(long)]
        revoked: bool,
    },
    /// Produce a signed TDX quote v4 (raw bytes, or CoCo `tdx` evidence JSON).
    Quote {
        #[arg(long)]
        dir: PathBuf,
        /// MRTD, 48 bytes hex.
        #[arg(long)]
        mr_td: String,
        /// report_data, up to 64 bytes hex (zero-padded).
        #[arg(long, default_value = "")]
        report_data: String,
        /// MRCONFIGID, up to 48 bytes hex (zero-padded).
        #[arg(long, default_value = "")]
        mr_config_id: String,
        /// A debug TD.
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Write the simulator's collateral under `<dir>/collateral/`.
pub fn write_tdx_collateral(
    sim: &ward_sim::tdx::DcapSim,
    dir: &std::path::Path,
) -> Result<PathBuf> {
    let cdir = dir.join("collateral");
    std::fs::create_dir_all(&cdir)?;
    let now = crate::now();
    let tdx = sim.collateral_json(now).map_err(|e| anyhow::anyhow!(e))?;
    std::fs::write(
        cdir.join(format!("{}-tdx.json", sim.fmspc())),
        tdx.to_string(),
    )?;
    let sgx = sim
        .sgx_collateral_json(now)
        .map_err(|e| anyhow::anyhow!(e))?;
    std::fs::write(
        cdir.join(format!("{}-sgx.json", sim.fmspc())),
        sgx.to_string(),
    )?;
    Ok(cdir)
}

fn run_tdx(cmd: TdxCmd) -> Result<()> {
    match cmd {
        TdxCmd::Init { dir, revoked } => {
            let sim = ward_sim::tdx::DcapSim::generate(crate::now(), revoked)
                .map_err(|e| anyhow::anyhow!(e))?;
            sim.save(&dir).map_err(|e| anyhow::anyhow!(e))?;
            let cdir = write_tdx_collateral(&sim, &dir)?;
            println!(
                "# simulated TDX platform (FMSPC {}) in {}; add to ward serve's configuration:",
                sim.fmspc(),
                dir.display()
            );
            println!("[dcap]");
            println!("collateral_dir = {:?}", cdir.display().to_string());
            println!(
                "simulated_roots = [\"{}\"]",
                hex::encode(sim.root_fingerprint())
            );
        }
        TdxCmd::Quote {
            dir,
            mr_td,
            report_data,
            mr_config_id,
            debug,
            json,
            output,
        } => {
            let sim = ward_sim::tdx::DcapSim::load(&dir).map_err(|e| anyhow::anyhow!(e))?;
            let mut p = ward_sim::tdx::TdParams {
                mr_td: padded("mr-td", &mr_td)?,
                report_data: padded("report-data", &report_data)?,
                mr_config_id: padded("mr-config-id", &mr_config_id)?,
                ..Default::default()
            };
            if debug {
                p.td_attributes[0] |= 1;
            }
            let q = sim.tdx_quote(&p).map_err(|e| anyhow::anyhow!(e))?;
            write_quote(&output, q, json)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum SnpCmd {
    /// Create a simulated platform (ARK/ASK/VCEK) in a directory and print
    /// the `[snp]` configuration that trusts it.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "genoa", value_parser = ["milan", "genoa", "turin"])]
        product: String,
        /// TCB as bootloader,tee,snp,microcode[,fmc (Turin)].
        #[arg(long, default_value = "9,0,23,72")]
        tcb: String,
    },
    /// Produce a signed report (raw bytes, or CoCo `snp` evidence JSON).
    Report {
        #[arg(long)]
        dir: PathBuf,
        /// Launch measurement, 48 bytes hex.
        #[arg(long)]
        measurement: String,
        /// report_data, up to 64 bytes hex (zero-padded).
        #[arg(long, default_value = "")]
        report_data: String,
        /// HOST_DATA, up to 32 bytes hex (zero-padded).
        #[arg(long, default_value = "")]
        host_data: String,
        /// Guest policy (hex); 0x30000 forbids debug, 0xB0000 allows it.
        #[arg(long, default_value = "0x30000")]
        policy: String,
        /// Write CoCo evidence JSON instead of the raw 1184 bytes.
        #[arg(long)]
        json: bool,
        #[arg(long, short)]
        output: PathBuf,
    },
}

fn padded<const N: usize>(what: &str, h: &str) -> Result<[u8; N]> {
    let b = hex::decode(h.trim()).with_context(|| format!("--{what} is not hex"))?;
    if b.len() > N {
        bail!("--{what} is longer than {N} bytes");
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(&b);
    Ok(out)
}

pub fn run(cmd: SimCmd) -> Result<()> {
    let cmd = match cmd {
        SimCmd::Snp(c) => c,
        SimCmd::Tdx(c) => return run_tdx(c),
        SimCmd::Sgx(c) => return run_sgx(c),
    };
    match cmd {
        SnpCmd::Init { dir, product, tcb } => {
            let product = match product.as_str() {
                "milan" => Product::Milan,
                "genoa" => Product::Genoa,
                _ => Product::Turin,
            };
            let v: Vec<u8> = tcb
                .split(',')
                .map(|x| x.trim().parse::<u8>())
                .collect::<Result<_, _>>()
                .context("--tcb")?;
            let tcb = match (product, v.as_slice()) {
                (Product::Turin, [bl, tee, snp, uc, fmc]) => TcbParts {
                    fmc: Some(*fmc),
                    bootloader: *bl,
                    tee: *tee,
                    snp: *snp,
                    microcode: *uc,
                },
                (Product::Milan | Product::Genoa, [bl, tee, snp, uc]) => TcbParts {
                    fmc: None,
                    bootloader: *bl,
                    tee: *tee,
                    snp: *snp,
                    microcode: *uc,
                },
                _ => bail!("--tcb: bootloader,tee,snp,microcode (plus fmc on Turin)"),
            };
            let sim =
                SnpSim::generate(product, tcb, crate::now()).map_err(|e| anyhow::anyhow!(e))?;
            sim.save(&dir).map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "# simulated {} platform in {}; add to ward serve's configuration:",
                product.name(),
                dir.display()
            );
            println!("[snp]");
            println!(
                "cert_chains = [{:?}]",
                dir.join("cert_chain.pem").display().to_string()
            );
            println!(
                "simulated_roots = [\"{}\"]",
                hex::encode(sim.ark_fingerprint())
            );
        }
        SnpCmd::Report {
            dir,
            measurement,
            report_data,
            host_data,
            policy,
            json,
            output,
        } => {
            let sim = SnpSim::load(&dir).map_err(|e| anyhow::anyhow!(e))?;
            let measurement =
                hex::decode(measurement.trim()).context("--measurement is not hex")?;
            let measurement: [u8; 48] = measurement
                .try_into()
                .map_err(|_| anyhow::anyhow!("--measurement must be 48 bytes"))?;
            let policy = u64::from_str_radix(policy.trim_start_matches("0x"), 16)
                .context("--policy is not hex")?;
            let p = SnpReportParams {
                measurement,
                report_data: padded("report-data", &report_data)?,
                host_data: padded("host-data", &host_data)?,
                policy,
                ..Default::default()
            };
            let bytes = if json {
                serde_json::to_vec_pretty(&sim.evidence_json(&p).map_err(|e| anyhow::anyhow!(e))?)?
            } else {
                sim.report(&p).map_err(|e| anyhow::anyhow!(e))?
            };
            std::fs::write(&output, bytes)
                .with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
}
