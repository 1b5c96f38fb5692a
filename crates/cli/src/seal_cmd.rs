//! `ward seal`: the workload owner's side of sealed secrets.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ward_guest::sealed::{seal_envelope, seal_vault};
use ward_proto::jwt::Es256Signer;

#[derive(clap::Subcommand)]
pub enum SealCmd {
    /// Create the owner's ES256 sealing key: `seal-key.pk8` (private, 0600)
    /// and `seal-pub.jwk` (upload it as the KBS resource named by --kid).
    Keygen {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Seal a reference to a KBS resource (`vault`).
    Vault {
        #[command(flatten)]
        key: SignArgs,
        /// The resource the sealed secret stands for, `kbs:///repo/type/tag`.
        name: String,
    },
    /// Seal a file's content under a fresh data key wrapped by a 32-byte
    /// key-encryption key that lives in the KBS as --key-id (`envelope`).
    Envelope {
        #[command(flatten)]
        key: SignArgs,
        /// KBS resource holding the 32-byte key-encryption key.
        #[arg(long)]
        key_id: String,
        /// The same 32-byte key-encryption key, from a file.
        #[arg(long)]
        kek: PathBuf,
        /// The plaintext (`-` for standard input).
        input: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The owner's sealing key (PKCS#8 DER, from `ward seal keygen`).
    #[arg(long)]
    signing_key: PathBuf,
    /// KBS resource holding the matching public JWK, `kbs:///repo/type/tag`.
    #[arg(long)]
    kid: String,
}

fn signer(a: &SignArgs) -> Result<Es256Signer> {
    let der = std::fs::read(&a.signing_key)
        .with_context(|| format!("reading {}", a.signing_key.display()))?;
    Ok(Es256Signer::from_pkcs8(&der)?)
}

pub fn run(cmd: SealCmd) -> Result<()> {
    let sealed = match cmd {
        SealCmd::Keygen { dir } => {
            std::fs::create_dir_all(&dir)?;
            let (signer, der) = Es256Signer::generate()?;
            let key = dir.join("seal-key.pk8");
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            std::io::Write::write_all(
                &mut o
                    .open(&key)
                    .with_context(|| format!("creating {}", key.display()))?,
                &der,
            )?;
            let jwk = dir.join("seal-pub.jwk");
            std::fs::write(&jwk, serde_json::to_vec(signer.public_jwk())?)?;
            println!("{}\n{}", key.display(), jwk.display());
            return Ok(());
        }
        SealCmd::Vault { key, name } => seal_vault(&signer(&key)?, &key.kid, &name)?,
        SealCmd::Envelope {
            key,
            key_id,
            kek,
            input,
        } => {
            let k = std::fs::read(&kek).with_context(|| format!("reading {}", kek.display()))?;
            let k: [u8; 32] = k
                .try_into()
                .map_err(|_| anyhow::anyhow!("{}: not a 32-byte key", kek.display()))?;
            let plain = crate::read_input(&input)?;
            seal_envelope(&signer(&key)?, &key.kid, &key_id, &k, &plain)?
        }
    };
    println!("{sealed}");
    Ok(())
}
