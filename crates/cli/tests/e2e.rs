//! End to end through the real binary: `ward serve` on 127.0.0.1:0, secrets
//! stored with `ward admin`, fetched with `ward get-resource`; a restart
//! between `/auth` and `/attest`; two processes on one data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::kbs::{runtime_data_hash, RuntimeData};
use ward_proto::{b64, HashAlgorithm};

mod common;
use common::kbs::{attest, attestation, session_cookie, spawn_listening, Server, AUTH};
use common::write_layout;

const WARD: &str = env!("CARGO_BIN_EXE_ward");

fn serve(data: &Path, extra: &[&str]) -> Server {
    serve_on(data, "127.0.0.1:0", extra)
}

fn serve_on(data: &Path, listen: &str, extra: &[&str]) -> Server {
    let mut cmd = Command::new(WARD);
    cmd.args(["serve", "--insecure-http", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(extra);
    spawn_listening(cmd, Stdio::null())
}

/// `ward guest serve` (sample TEE) against `kbs`, logging JSON to `stderr`.
fn guest_serve(kbs: &str, stderr: Stdio) -> Server {
    let mut cmd = Command::new(WARD);
    cmd.args([
        "--log-format",
        "json",
        "guest",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--tee", "sample", "--url", kbs]);
    spawn_listening(cmd, stderr)
}

/// `POST /kbs/v0/auth` for `tee`: the session cookie and the nonce.
fn kbs_auth(http: &reqwest::blocking::Client, url: &str, tee: &str) -> (String, String) {
    let r = http
        .post(format!("{url}/kbs/v0/auth"))
        .body(format!(
            r#"{{"version":"0.4.0","tee":"{tee}","extra-params":{{}}}}"#
        ))
        .send()
        .unwrap();
    let cookie = session_cookie(&r);
    let nonce = r.json::<Value>().unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, nonce)
}

/// `ward <args>` whose stdout is one JSON object (`ward verify`): the exit
/// code and the object.
fn ward_json<S: AsRef<str>>(args: &[S]) -> (Option<i32>, Value) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = ward(&args);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn ward(args: &[&str]) -> Output {
    Command::new(WARD)
        .args(args)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap()
}

/// `ward admin resource put <uri> <file>` with the data directory's admin token.
fn admin_put(url: &str, data: &Path, uri: &str, file: &Path) {
    let out = ward(&[
        "admin",
        "--url",
        url,
        "--data-dir",
        data.to_str().unwrap(),
        "resource",
        "put",
        uri,
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stores_with_admin_fetches_with_get_resource_and_denies_without_dev() {
    let dir = tempfile::tempdir().unwrap();
    let secret: Vec<u8> = (0..=255u8).chain(b"\n\0tail".iter().copied()).collect();
    let secret_file = dir.path().join("secret.bin");
    std::fs::write(&secret_file, &secret).unwrap();

    for (dev, name) in [(true, "dev"), (false, "prod")] {
        let data = dir.path().join(name);
        let s = serve(&data, if dev { &["--dev"] } else { &[] });
        let data_s = data.to_str().unwrap();
        let out = ward(&[
            "admin",
            "--url",
            &s.url,
            "--data-dir",
            data_s,
            "resource",
            "put",
            "kbs:///default/test/key",
            secret_file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = ward(&["get-resource", "--url", &s.url, "kbs:///default/test/key"]);
        if dev {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, secret, "exact bytes back");
        } else {
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("denied by the KBS resource policy"), "{err}");
            // Issue 18, item 7: and why, from the appraisal.
            assert!(
                err.contains("ear.status is contraindicated") && err.contains("hardware 97"),
                "{err}"
            );
            assert!(out.stdout.is_empty());
            // A policy bound to the prefix `default/test` releases it; once
            // unbound, the default policy denies again.
            let policy = dir.path().join("allow.rego");
            std::fs::write(&policy, "package policy\ndefault allow := true\n").unwrap();
            let admin = |args: &[&str]| {
                let mut all = vec!["admin", "--url", &s.url, "--data-dir", data_s];
                all.extend_from_slice(args);
                let out = ward(&all);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            };
            let p = policy.to_str().unwrap();
            admin(&["resource-policy", "set", "--prefix", "default/test", p]);
            let shown = admin(&["resource-policy", "show", "--prefix", "default/test"]);
            assert_eq!(shown, b"package policy\ndefault allow := true\n");
            let list: Value = serde_json::from_slice(&admin(&["resource-policy", "list"])).unwrap();
            assert_eq!(list[0]["prefix"], "default/test", "{list}");
            let out = ward(&["get-resource", "--url", &s.url, "kbs:///default/test/key"]);
            assert_eq!(
                out.stdout,
                secret,
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            admin(&["resource-policy", "delete", "default/test"]);
            let out = ward(&["get-resource", "--url", &s.url, "kbs:///default/test/key"]);
            assert!(!out.status.success());
        }
        // Metadata, never content, through admin.
        let out = ward(&[
            "admin",
            "--url",
            &s.url,
            "--data-dir",
            data_s,
            "resource",
            "list",
        ]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list[0]["size"], secret.len());
        // The admin token file is private.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(data.join("admin/admin-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o077, 0);
            let m = std::fs::metadata(data.join("kek"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o077, 0);
        }
    }
}

#[test]
fn refuses_to_serve_plain_http_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WARD)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
}

/// `ward serve` on the default embedded store, run to completion (it is
/// expected to refuse to start).
fn serve_output(data: &Path, listen: &str) -> Output {
    Command::new(WARD)
        .args(["serve", "--insecure-http", "--listen", listen, "--data-dir"])
        .arg(data)
        .env("WARD_LOG", "warn")
        .env_remove("WARD_KEK")
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Issue 18, item 3: a port clash used to leave a data directory, a KEK and
/// admin credentials behind; and a database whose KEK file was missing got
/// a new random KEK written before the key check failed.
#[test]
fn first_start_creates_nothing_on_a_port_clash_and_never_a_kek_beside_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let s = serve(&a, &[]);
    let taken = s.url.strip_prefix("http://").unwrap().to_string();
    let b = dir.path().join("b");
    let out = serve_output(&b, &taken);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("binding"));
    assert!(!b.exists(), "a refused start left {:?}", entries(&b));
    drop(s);
    assert_eq!(
        entries(&a),
        ["admin", "kek", "ward.db", "ward.db-shm", "ward.db-wal"]
            .iter()
            .filter(|n| a.join(n).exists())
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    );
    // The KEK goes missing (a restore done out of order).
    std::fs::remove_file(a.join("kek")).unwrap();
    let out = serve_output(&a, "127.0.0.1:0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ward.db exists but its key-encryption key")
            && err.contains(&a.join("kek").display().to_string())
            && err.contains("restore"),
        "{err}"
    );
    assert!(!a.join("kek").exists(), "a new KEK was written");
}

/// Issue 18, item 3, on a real full disk: a small tmpfs in a private mount
/// namespace (`unshare -m`, root only; skipped with a notice otherwise).
/// The first start on a full disk used to leave a 0-byte KEK that broke
/// every later start; `/readyz` did not notice that the store could not
/// write.
#[test]
fn a_full_disk_leaves_no_partial_key_is_reported_and_makes_the_store_unready() {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        eprintln!("NOTICE: skipping the full-disk test: cannot mount a tmpfs in a private mount namespace (needs root and unshare)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    // Fill the disk, try a first start, free the space, start for real.
    let script = r#"set -u
mount -t tmpfs -o size=8m tmpfs "$1"
dd if=/dev/zero of="$1/fill" bs=4k >/dev/null 2>&1
"$3" serve --insecure-http --listen 127.0.0.1:0 --data-dir "$1/data" >/dev/null 2>"$2/first.err"
echo $? > "$2/first.rc"
ls -A "$1/data" > "$2/first.ls" 2>&1
rm "$1/fill"
exec "$3" serve --insecure-http --listen 127.0.0.1:0 --data-dir "$1/data"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .arg(&mnt)
        .arg(&logs)
        .arg(WARD)
        .env_remove("WARD_KEK");
    let s = spawn_listening(cmd, Stdio::null());
    let read = |n: &str| std::fs::read_to_string(logs.join(n)).unwrap();
    assert_ne!(read("first.rc").trim(), "0", "started on a full disk");
    let err = read("first.err");
    let kek = mnt.join("data").join("kek");
    assert!(
        err.contains("the disk is full") && err.contains(&kek.display().to_string()),
        "{err}"
    );
    assert_eq!(
        read("first.ls").trim(),
        "",
        "a failed first start left files"
    );
    let http = reqwest::blocking::Client::new();
    let ready = |want: u16| {
        let r = http.get(format!("{}/readyz", s.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), want, "{}", r.text().unwrap());
    };
    ready(200);
    // The server's view of the mount, from outside its namespace.
    let inside = Path::new("/proc")
        .join(s.child.id().to_string())
        .join("root")
        .join(mnt.strip_prefix("/").unwrap());
    let fill = inside.join("fill2");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    ready(503);
    std::fs::remove_file(&fill).unwrap();
    ready(200);
}

#[test]
fn handshake_survives_restart_and_spans_two_processes_on_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::blocking::Client::new();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();

    // Restart between /auth and /attest.
    let s1 = serve(&data, &["--dev"]);
    let r = http
        .post(format!("{}/kbs/v0/auth", s1.url))
        .body(AUTH)
        .send()
        .unwrap();
    let cookie = session_cookie(&r);
    let nonce = r.json::<Value>().unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    drop(s1);
    let s2 = serve(&data, &["--dev"]);
    let r = http
        .post(format!("{}/kbs/v0/attest", s2.url))
        .header("cookie", &cookie)
        .json(&attestation(&nonce, &key))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());

    // Two processes at once: auth on one, attest on the other, fetch on the first.
    let s3 = serve(&data, &["--dev"]);
    let secret_file = dir.path().join("s");
    std::fs::write(&secret_file, b"two-replicas").unwrap();
    let out = ward(&[
        "admin",
        "--url",
        &s3.url,
        "--data-dir",
        data.to_str().unwrap(),
        "resource",
        "put",
        "kbs:///r/t/k",
        secret_file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let cookie = attest(&http, &s2.url, &s3.url, &key);
    let r = http
        .get(format!("{}/kbs/v0/resource/r/t/k", s2.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwe: ward_proto::jwe::FlattenedJwe = r.json().unwrap();
    assert_eq!(
        ward_proto::jwe::decrypt(&key, &jwe).unwrap(),
        b"two-replicas"
    );
}

#[test]
fn verify_prints_claims_and_fails_on_bad_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        serde_json::to_vec(&attestation("bm9uY2U=", &key)).unwrap(),
    )
    .unwrap();
    let out = ward(&[
        "verify",
        "--tee",
        "sample",
        "--evidence",
        good.to_str().unwrap(),
        "--as-of",
        "2025-01-01T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["runtime_data_binding"], "valid");
    // Issue 18, item 6.5: times are RFC 3339, the number is kept beside.
    assert_eq!(v["as_of"], "2025-01-01T00:00:00Z");
    assert_eq!(v["as_of_unix"], 1735689600);
    assert!(v["error"].is_null());
    assert_eq!(v["annotated_evidence"]["sample"]["svn"], "1");

    // Wrong expected nonce; tampered binding; primary evidence against an expected report_data.
    let out = ward(&[
        "verify",
        "--evidence",
        good.to_str().unwrap(),
        "--nonce",
        "b3RoZXI=",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["verdict"],
        "invalid"
    );
    let mut bad: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    bad["runtime-data"]["nonce"] = json!("dGFtcGVyZWQ=");
    let badf = dir.path().join("bad.json");
    std::fs::write(&badf, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = ward(&["verify", "--evidence", badf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("report_data does not bind"),
        "{v}"
    );

    let primary = dir.path().join("primary.json");
    std::fs::write(
        &primary,
        serde_json::to_vec(&json!({"svn": "1", "report_data": b64::std_encode([0xabu8; 48])}))
            .unwrap(),
    )
    .unwrap();
    let ok = ward(&[
        "verify",
        "--evidence",
        primary.to_str().unwrap(),
        "--report-data",
        &hex::encode([0xabu8; 48]),
    ]);
    assert!(ok.status.success());
    let no = ward(&[
        "verify",
        "--evidence",
        primary.to_str().unwrap(),
        "--report-data",
        &hex::encode([0xacu8; 48]),
    ]);
    assert_eq!(no.status.code(), Some(1));
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, b"{\"svn\": 5}").unwrap();
    // Issue 18, item 6.7: input errors are exit 2, with the same one JSON
    // object as every other outcome.
    let out = ward(&[
        "verify",
        "--tee",
        "sample",
        "--evidence",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("malformed evidence"),
        "{v}"
    );
    // Without --tee and with nothing recognisable, the TEE cannot be told.
    let out = ward(&["verify", "--evidence", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot tell which TEE"),
        "{v}"
    );
    // Issue 18, item 6.5: an unknown --tee lists the valid ones, in any case.
    let out = ward(&[
        "verify",
        "--tee",
        "TDX-ish",
        "--evidence",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("valid: az-snp-vtpm, az-tdx-vtpm, sample, sgx, snp, tdx"),
        "{v}"
    );
    let out = ward(&[
        "verify",
        "--tee",
        "SAMPLE",
        "--evidence",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    // --as-of also takes a date and Unix seconds; anything else is exit 2.
    for (as_of, unix) in [("2025-01-01", 1735689600), ("1735689600", 1735689600)] {
        let out = ward(&[
            "verify",
            "--evidence",
            good.to_str().unwrap(),
            "--as-of",
            as_of,
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["as_of_unix"], unix, "{as_of}");
    }
    let out = ward(&[
        "verify",
        "--evidence",
        good.to_str().unwrap(),
        "--as-of",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Issue 18, item 6.8: --policy runs an attestation policy offline.
    let out = ward(&[
        "verify",
        "--evidence",
        primary.to_str().unwrap(),
        "--policy",
        "default",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["appraisal"]["policy"], "default", "{v}");
    assert_eq!(
        v["appraisal"]["ear.trustworthiness-vector"]["hardware"], 97,
        "{v}"
    );
    let own = dir.path().join("own.rego");
    std::fs::write(
        &own,
        "package policy\nimport rego.v1\nhardware := 2 if input.sample.svn == \"1\"\n",
    )
    .unwrap();
    let out = ward(&[
        "verify",
        "--evidence",
        primary.to_str().unwrap(),
        "--policy",
        own.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["appraisal"]["ear.trustworthiness-vector"]["hardware"], 2,
        "{v}"
    );
    let help = ward(&["verify", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("1204") && help.contains("Exit codes: 0 valid, 1 invalid, 2"),
        "{help}"
    );
}

fn fixtures() -> Option<std::path::PathBuf> {
    ward_proto::testing::fixtures("snp-virtee-sev-milan")
}

#[test]
fn verify_snp_raw_reports_and_coco_json_from_files() {
    let Some(f) = fixtures() else { return };
    let p = |rel: &str| f.join(rel).to_str().unwrap().to_string();
    let run = |args: &[String]| ward_json(args);
    let s = |x: &str| x.to_string();
    // Hex text report with its VCEK and the KDS chain.
    let (code, v) = run(&[
        s("verify"),
        s("--tee"),
        s("snp"),
        s("--evidence"),
        p("snp-virtee-sev-milan/report_milan.hex"),
        s("--vcek"),
        p("snp-virtee-sev-milan/vcek_milan.der"),
        s("--cert-chain"),
        p("snp-virtee-sev-milan/cert_chain_milan"),
        s("--as-of"),
        s("2025-01-01T00:00:00Z"),
    ]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
    assert_eq!(v["claims"]["reported_tcb"]["microcode"], 115);
    // Without --vcek: offline miss names the chip and TCB; a collateral
    // directory holding the VCEK and the chain (no flags besides) verifies.
    let no_vcek = |extra: &[String]| {
        let mut args = vec![
            s("verify"),
            s("--tee"),
            s("snp"),
            s("--evidence"),
            p("snp-virtee-sev-milan/report_milan.hex"),
            s("--as-of"),
            s("2025-01-01T00:00:00Z"),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, v) = no_vcek(&[]);
    assert_eq!(code, Some(1));
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("snp.collateral")
            && err.contains("bl=3 tee=0 snp=8 ucode=115")
            && err.contains("offline"),
        "{v}"
    );
    let coll = tempfile::tempdir().unwrap();
    std::fs::copy(
        p("snp-virtee-sev-milan/vcek_milan.der"),
        coll.path().join("vcek.der"),
    )
    .unwrap();
    std::fs::copy(
        p("amd-roots/ask_ark_milan.pem"),
        coll.path().join("cert_chain"),
    )
    .unwrap();
    let (code, v) = no_vcek(&[s("--collateral-dir"), coll.path().display().to_string()]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
    // Binary report; wrong VCEK (another chip) is invalid, naming the check.
    let base = [
        s("verify"),
        s("--tee"),
        s("snp"),
        s("--evidence"),
        p("trustee/snp/milan-report.bin"),
        s("--cert-chain"),
        p("amd-roots/ask_ark_milan.pem"),
        s("--as-of"),
        s("2025-01-01T00:00:00Z"),
        s("--vcek"),
    ];
    let mut ok = base.to_vec();
    ok.push(p("trustee/snp/milan-vcek.der"));
    assert_eq!(run(&ok).0, Some(0));
    let mut wrong = base.to_vec();
    wrong.push(p("snp-virtee-sev-milan/vcek_milan.der"));
    let (code, v) = run(&wrong);
    assert_eq!(code, Some(1));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("snp.report_signature"),
        "{v}"
    );
    // CoCo evidence JSON: not yet valid at the README's time, valid later.
    let json = [
        s("verify"),
        s("--tee"),
        s("snp"),
        s("--evidence"),
        p("trustee/snp/genoa-evidence.json"),
        s("--cert-chain"),
        p("amd-roots/ask_ark_genoa.pem"),
        s("--as-of"),
    ];
    let mut early = json.to_vec();
    early.push(s("2025-01-01T00:00:00Z"));
    let (code, v) = run(&early);
    assert_eq!(code, Some(1));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("snp.certificate_validity"),
        "{v}"
    );
    let mut later = json.to_vec();
    later.push(s("2025-07-01T00:00:00Z"));
    let (code, v) = run(&later);
    assert_eq!(
        (code, v["claims"]["product"].as_str()),
        (Some(0), Some("Genoa")),
        "{v}"
    );
    // Azure SNP CVM evidence (HCL report + vTPM quote + VCEK).
    let (code, v) = run(&[
        s("verify"),
        s("--tee"),
        s("az-snp-vtpm"),
        s("--evidence"),
        p("trustee/az-snp-vtpm/evidence-v2.json"),
        s("--cert-chain"),
        p("amd-roots/ask_ark_milan.pem"),
        s("--as-of"),
        s("2025-07-01T00:00:00Z"),
        s("--report-data"),
        s("982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"),
    ]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
    assert!(v["claims"]["tpm"]["pcr00"]
        .as_str()
        .unwrap()
        .starts_with("84275b2f"));
    assert_eq!(v["init_data_binding"], v["claims"]["tpm"]["pcr08"]);
    let (code, v) = run(&[
        s("verify"),
        s("--tee"),
        s("az-snp-vtpm"),
        s("--evidence"),
        p("trustee/az-snp-vtpm/evidence-v1.json"),
        s("--cert-chain"),
        p("amd-roots/ask_ark_milan.pem"),
        s("--as-of"),
        s("2025-07-01T00:00:00Z"),
        s("--report-data"),
        s("00"),
    ]);
    assert_eq!(code, Some(1));
    assert!(v["error"].as_str().unwrap().contains("report_data"), "{v}");
}

#[test]
fn sim_snp_reports_verify_with_the_printed_configuration_only() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let out = ward(&[
        "sim",
        "snp",
        "init",
        "--dir",
        sim.to_str().unwrap(),
        "--product",
        "milan",
        "--tcb",
        "3,0,8,115",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8(out.stdout).unwrap();
    let fp = cfg
        .lines()
        .find_map(|l| l.strip_prefix("simulated_roots = [\""))
        .unwrap()
        .trim_end_matches("\"]")
        .to_string();
    assert_eq!(fp.len(), 64);
    let report = dir.path().join("report.bin");
    let m = "ab".repeat(48);
    let out = ward(&[
        "sim",
        "snp",
        "report",
        "--dir",
        sim.to_str().unwrap(),
        "--measurement",
        &m,
        "--report-data",
        "0102",
        "-o",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&report).unwrap().len(), 1184);
    // ward verify refuses the simulator's chain: its ARK is not pinned.
    let chain = sim.join("cert_chain.pem");
    let vcek = sim.join("vcek.der");
    let out = ward(&[
        "verify",
        "--tee",
        "snp",
        "--evidence",
        report.to_str().unwrap(),
        "--vcek",
        vcek.to_str().unwrap(),
        "--cert-chain",
        chain.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a pinned AMD root"));
}

/// `ward <cmd…>` as a simulated SNP guest of `sim_dir` with launch
/// `measurement`, against `url`.
fn sim_snp_guest(
    cmd: &[&str],
    url: &str,
    sim_dir: &Path,
    measurement: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![cmd[0]];
    args.extend_from_slice(&[
        "--url",
        url,
        "--tee",
        "sim-snp",
        "--sim-dir",
        sim_dir.to_str().unwrap(),
    ]);
    args.extend_from_slice(&["--sim-measurement", measurement]);
    args.extend_from_slice(extra);
    args.extend_from_slice(&cmd[1..]);
    ward(&args)
}

/// A simulated SNP platform in `dir/sim` and `ward serve` trusting it,
/// with its data in `dir/data`.
fn snp_service(dir: &Path) -> (Server, PathBuf, PathBuf) {
    let sim_dir = dir.join("sim");
    let out = ward(&["sim", "snp", "init", "--dir", sim_dir.to_str().unwrap()]);
    assert!(out.status.success());
    let snp_cfg = String::from_utf8(out.stdout).unwrap();
    let data = dir.join("data");
    let cfg_path = dir.join("ward.toml");
    std::fs::write(
        &cfg_path,
        format!("data_dir = {:?}\n{snp_cfg}", data.display().to_string()),
    )
    .unwrap();
    let s = serve(&data, &["--config", cfg_path.to_str().unwrap()]);
    (s, sim_dir, data)
}

#[test]
fn ward_serve_releases_to_a_simulated_snp_guest_with_the_reference_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let (s, sim_dir, data) = snp_service(dir.path());
    let d = data.to_str().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"snp-secret").unwrap();
    assert!(ward(&[
        "admin",
        "--url",
        &s.url,
        "--data-dir",
        d,
        "resource",
        "put",
        "kbs:///default/key/1",
        secret.to_str().unwrap()
    ])
    .status
    .success());
    let set_reference = |name: &str, v: &str| {
        let out = ward(&[
            "admin",
            "--url",
            &s.url,
            "--data-dir",
            d,
            "reference-value",
            "set",
            name,
            v,
        ]);
        assert!(out.status.success());
    };
    let good = "11".repeat(48);
    set_reference("snp_launch_measurement", &good);

    // ward's own guest, attesting with the simulator.
    let get = |m: &str| {
        ward(&[
            "get-resource",
            "--url",
            &s.url,
            "--tee",
            "sim-snp",
            "--sim-dir",
            sim_dir.to_str().unwrap(),
            "--sim-measurement",
            m,
            "kbs:///default/key/1",
        ])
    };
    let out = get(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"snp-secret");
    let out = get(&"22".repeat(48));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied by the KBS resource policy"));

    // The same platform as an Azure confidential VM: the report comes
    // through the (simulated) vTPM, and what booted is judged by its PCRs.
    let set_pcr4 = |v: &str| set_reference("tpm_pcr04", v);
    let get_az = || {
        ward(&[
            "get-resource",
            "--url",
            &s.url,
            "--tee",
            "sim-az-snp",
            "--sim-dir",
            sim_dir.to_str().unwrap(),
            "kbs:///default/key/1",
        ])
    };
    set_pcr4(&hex::encode(ward_sim::az::boot_pcrs()[4]));
    let out = get_az();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"snp-secret");
    set_pcr4(&"44".repeat(32));
    let out = get_az();
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied by the KBS resource policy"));

    // Init-data: sent and bound through HOST_DATA (TOML or annotation form);
    // a launch whose HOST_DATA does not match is refused by the guest itself.
    let init = dir.path().join("init.toml");
    std::fs::write(
        &init,
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n",
    )
    .unwrap();
    let digest: Value =
        serde_json::from_slice(&ward(&["initdata", "digest", init.to_str().unwrap()]).stdout)
            .unwrap();
    let annotation = ward(&["initdata", "encode", init.to_str().unwrap()]).stdout;
    let ann = dir.path().join("init.annotation");
    std::fs::write(&ann, &annotation).unwrap();
    let decoded = ward(&["initdata", "decode", ann.to_str().unwrap()]).stdout;
    assert_eq!(decoded, std::fs::read(&init).unwrap());
    let with_init = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "attest",
            "--claims",
            "--url",
            &s.url,
            "--tee",
            "sim-snp",
            "--sim-dir",
            sim_dir.to_str().unwrap(),
            "--sim-measurement",
            &good,
            "--init-data",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ward(&args)
    };
    for f in [&init, &ann] {
        let out = with_init(f, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ae = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
        assert_eq!(ae["init_data"], digest["digest"]);
        assert_eq!(
            ae["init_data_claims"]["policy.rego"],
            "package agent_policy"
        );
        assert_eq!(ae["snp"]["host_data"], digest["snp_host_data"]);
    }
    let zero = "00".repeat(32);
    let out = with_init(&init, &["--sim-host-data", &zero]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to use this init-data"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sim = ward_sim::snp::SnpSim::load(&sim_dir).unwrap();
    let http = reqwest::blocking::Client::new();
    let fetch = |measurement: [u8; 48], policy: u64| {
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let (cookie, nonce) = kbs_auth(&http, &s.url, "snp");
        let runtime = RuntimeData {
            nonce,
            tee_pubkey: key.public_jwk(),
        };
        let mut report_data = [0u8; 64];
        report_data[..48]
            .copy_from_slice(&runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap());
        let p = ward_sim::snp::SnpReportParams {
            measurement,
            report_data,
            policy,
            ..Default::default()
        };
        let body = json!({"init-data": null, "runtime-data": runtime,
            "tee-evidence": {"primary_evidence": sim.evidence_json(&p).unwrap(), "additional_evidence": ""}});
        let r = http
            .post(format!("{}/kbs/v0/attest", s.url))
            .header("cookie", &cookie)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = session_cookie(&r);
        let r = http
            .get(format!("{}/kbs/v0/resource/default/key/1", s.url))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status == 200)
            .then(|| ward_proto::jwe::decrypt(&key, &r.json().unwrap()).unwrap())
            .ok_or(status)
    };
    assert_eq!(fetch([0x11; 48], 0x30000).unwrap(), b"snp-secret");
    assert_eq!(
        fetch([0x11; 48], 0x30000 | ward_sim::snp::POLICY_DEBUG),
        Err(403)
    );
    assert_eq!(fetch([0x22; 48], 0x30000), Err(403));
}

/// `ward guest serve` against `ward serve`: a container-side HTTP call gets
/// the secret; a restarted trust service (new keys) is survived by
/// attesting again; a denying policy is a clear 403; no secret in the
/// guest's logs.
#[test]
fn guest_api_serves_secrets_survives_restarts_and_reports_denials() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"guest-api-secret-7f3a";
    let secret_file = dir.path().join("secret.bin");
    std::fs::write(&secret_file, secret).unwrap();
    let put = |url: &str, data: &Path, content: &[u8]| {
        std::fs::write(&secret_file, content).unwrap();
        admin_put(url, data, "kbs:///default/app/key", &secret_file);
    };

    let d1 = dir.path().join("kbs1");
    let kbs = serve(&d1, &["--dev"]);
    let kbs_addr = kbs.url.trim_start_matches("http://").to_string();
    put(&kbs.url, &d1, secret);

    let log = dir.path().join("guest.log");
    let guest = guest_serve(&kbs.url, Stdio::from(std::fs::File::create(&log).unwrap()));
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let r = http.get(format!("{}{path}", guest.url)).send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };

    let (status, body) = get("/cdh/resource/default/app/key");
    assert_eq!((status, body.as_slice()), (200, &secret[..]));
    let (status, body) = get("/aa/token?token_type=kbs");
    assert_eq!(status, 200);
    let token: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(token["token"].as_str().unwrap().split('.').count(), 3);
    assert!(
        token.get("tee_keypair").is_none(),
        "the TEE key never leaves"
    );
    let (status, body) = get("/aa/evidence?runtime_data=hello");
    assert_eq!(status, 200);
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["report_data"], b64::std_encode(b"hello"));
    let (status, body) = get(&format!("/aa/evidence?runtime_data={}", "x".repeat(65)));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get("/cdh/resource/default/app/missing");
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "ResourceNotFound"
    );
    assert_eq!(get("/healthz").0, 200);

    // The trust service restarts on the same address with other keys: the
    // guest's session and token are refused, it attests again.
    drop(kbs);
    let d2 = dir.path().join("kbs2");
    let kbs = serve_on(&d2, &kbs_addr, &["--dev"]);
    put(&kbs.url, &d2, b"guest-api-secret-rotated");
    let (status, body) = get("/cdh/resource/default/app/key");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"guest-api-secret-rotated"[..])
    );

    // A service whose policy denies the sample TEE: a clear 403.
    drop(kbs);
    let d3 = dir.path().join("kbs3");
    let kbs = serve_on(&d3, &kbs_addr, &[]);
    put(&kbs.url, &d3, secret);
    let (status, body) = get("/cdh/resource/default/app/key");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"], "PolicyDenied");
    assert!(err["detail"].as_str().unwrap().contains("denied"), "{err}");
    drop(kbs);

    // The KBS is gone: unreachable, 502.
    let (status, body) = get("/cdh/resource/default/app/other");
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    drop(guest);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logs.contains("guest-api-secret"),
        "a secret reached the logs"
    );
}

#[test]
fn guest_api_refuses_a_non_loopback_address() {
    let out = ward(&["guest", "serve", "--listen", "0.0.0.0:0", "--tee", "sample"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    // Issue 18, item 4: nothing claimed to listen before the refusal.
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("listening"), "{said}");
}

/// Issue 18, item 1: with the descriptor limit at 64, sockets that send
/// nothing used to exhaust the server until `/healthz` timed out. Now they
/// are closed after the first-request deadline, the longest idle make room
/// for new ones at the cap, and a trickled body gets 408.
#[test]
fn healthz_is_answered_while_200_idle_sockets_hold_a_server_limited_to_64_descriptors() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        "[limits]\nfirst_request_secs = 2.0\nidle_secs = 2.0\nbody_secs = 1.0\n",
    )
    .unwrap();
    let mut cmd = Command::new(WARD);
    cmd.args([
        "serve",
        "--insecure-http",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.path().join("data"))
    .arg("--config")
    .arg(&config);
    // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let s = spawn_listening(cmd, Stdio::null());
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let first_request = Duration::from_secs(2);
    let ask = |req: &[u8]| -> String {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(first_request)).unwrap();
        c.write_all(req).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "no complete answer within the first-request deadline ({e}): {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let health = ask(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
    // Every idle socket is closed, within the deadline plus the time to
    // drain the backlog.
    let start = Instant::now();
    for sock in &mut idle {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(sock.read(&mut b), Ok(0)),
            "an idle socket stayed open"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    let metrics = ask(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let limit_line = metrics
        .lines()
        .find(|l| l.starts_with("ward_kbs_connections_limit "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        limit_line, "ward_kbs_connections_limit 32",
        "64 descriptors less 32 reserved"
    );
    assert!(metrics.contains("ward_kbs_connections_closed_total{reason=\"evicted\"}"));
    // A body trickled a byte at a time is refused when the body deadline
    // passes, with a KBS error body.
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"POST /kbs/v0/auth HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        let _ = c.write_all(b" ");
        c.set_nonblocking(true).unwrap();
        if let Ok(n) = c.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        c.set_nonblocking(false).unwrap();
        if String::from_utf8_lossy(&out).contains("RequestTimeout") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("/errors/RequestTimeout"), "{text}");
}

/// `--tee auto` tries configfs-tsm, /dev/sev-guest, /dev/tdx_guest and an
/// Azure vTPM, and names each when none exists; an explicit choice names
/// its device.
#[test]
fn auto_detection_names_every_interface_it_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let tsm = tmp.path().join("no-tsm");
    let dev = tmp.path().join("no-sev-guest");
    let (tsm_s, dev_s) = (tsm.to_str().unwrap(), dev.to_str().unwrap());
    let tdx = tmp.path().join("no-tdx-guest");
    let tpm = tmp.path().join("no-tpm");
    let (tdx_s, tpm_s) = (tdx.to_str().unwrap(), tpm.to_str().unwrap());
    let fails_naming = |tee: &str, needles: &[&str]| {
        let out = ward(&[
            "attest",
            "--tee",
            tee,
            "--url",
            "http://127.0.0.1:9",
            "--tsm-root",
            tsm_s,
            "--sev-guest-device",
            dev_s,
            "--tdx-guest-device",
            tdx_s,
            "--tpm-device",
            tpm_s,
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{tee}: {err}");
        }
    };
    fails_naming(
        "auto",
        &["no-tsm", "no-sev-guest", "no-tdx-guest", "no-tpm"],
    );
    fails_naming("tdx-guest", &["no-tdx-guest", "does not exist"]);
    fails_naming("az-vtpm", &["no-tpm", "not an Azure"]);
    fails_naming("sev-guest", &["no-sev-guest", "does not exist"]);
}

/// `ward seal` → `POST /cdh/unseal` → plaintext; a tampered seal is
/// refused; a seal by another owner's key is refused.
#[test]
fn sealed_secrets_round_trip_through_the_guest_api() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let data = dir.path().join("kbs");
    let kbs = serve(&data, &["--dev"]);
    let put = |uri: &str, file: &str| {
        let out = ward(&[
            "admin",
            "--url",
            &kbs.url,
            "--data-dir",
            data.to_str().unwrap(),
            "resource",
            "put",
            uri,
            file,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let seal = |args: &[&str]| {
        let out = ward(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };

    // The owner: a sealing key whose public half lives in the KBS, a KEK.
    assert!(ward(&["seal", "keygen", "--dir", &p("owner")])
        .status
        .success());
    put("kbs:///default/sealing/pub", &p("owner/seal-pub.jwk"));
    std::fs::write(p("kek"), [42u8; 32]).unwrap();
    put("kbs:///default/kek/1", &p("kek"));
    std::fs::write(p("db-password"), b"hunter2-sealed").unwrap();
    put("kbs:///default/app/db", &p("db-password"));
    let sign = [
        "--signing-key",
        &p("owner/seal-key.pk8"),
        "--kid",
        "kbs:///default/sealing/pub",
    ];
    let (kek, db) = (p("kek"), p("db-password"));
    let mut env_args = vec!["seal", "envelope"];
    env_args.extend_from_slice(&sign);
    env_args.extend_from_slice(&["--key-id", "kbs:///default/kek/1", "--kek", &kek, &db]);
    let envelope = seal(&env_args);
    let mut vault_args = vec!["seal", "vault"];
    vault_args.extend_from_slice(&sign);
    vault_args.push("kbs:///default/app/db");
    let vault = seal(&vault_args);
    assert!(envelope.starts_with("sealed.") && vault.starts_with("sealed."));
    assert!(!envelope.contains("hunter2"));

    let guest = guest_serve(&kbs.url, Stdio::null());
    let http = reqwest::blocking::Client::new();
    let unseal = |body: String| {
        let r = http
            .post(format!("{}/cdh/unseal", guest.url))
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    assert_eq!(unseal(envelope.clone()), (200, b"hunter2-sealed".to_vec()));
    assert_eq!(
        unseal(json!({"secret": vault}).to_string()),
        (200, b"hunter2-sealed".to_vec())
    );

    // Tampered payload (another key_id): the signature no longer holds.
    let mut parts: Vec<String> = envelope.split('.').map(String::from).collect();
    let mut payload: Value =
        serde_json::from_slice(&b64::url_decode("p", &parts[2]).unwrap()).unwrap();
    payload["key_id"] = json!("kbs:///default/app/db");
    parts[2] = b64::url_encode(serde_json::to_vec(&payload).unwrap());
    let (status, body) = unseal(parts.join("."));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("SealSignature"));
    // Sealed by someone else's key, naming the owner's kid.
    assert!(ward(&["seal", "keygen", "--dir", &p("mallory")])
        .status
        .success());
    let mut m = vec!["seal", "vault", "--signing-key"];
    let mk = p("mallory/seal-key.pk8");
    m.extend_from_slice(&[
        &mk,
        "--kid",
        "kbs:///default/sealing/pub",
        "kbs:///default/app/db",
    ]);
    let (status, _) = unseal(seal(&m));
    assert_eq!(status, 403);
    let (status, _) = unseal("not-sealed".into());
    assert_eq!(status, 400);
}

/// `ward verify` on raw TDX/SGX quotes with collateral from a file or a
/// directory, as of the dcap-phala times.
#[test]
fn verify_dcap_quotes_with_collateral_files() {
    let Some(f) = ward_proto::testing::fixtures("dcap-phala/sgx_quote") else {
        return;
    };
    let d = f.join("dcap-phala");
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    let run = |tee: &str, quote: &str, coll: &str, at: &str| {
        let out = ward(&[
            "verify",
            "--tee",
            tee,
            "--evidence",
            quote,
            "--collateral",
            coll,
            "--as-of",
            at,
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = run(
        "tdx",
        &p("tdx_quote"),
        &p("tdx_quote_collateral.json"),
        "2025-07-01T00:00:00Z",
    );
    assert_eq!(
        (code, v["claims"]["tcb_status"].as_str()),
        (Some(0), Some("UpToDate")),
        "{v}"
    );
    // Hex text quote; a directory holding several collateral sets.
    let coll = tempfile::tempdir().unwrap();
    for c in ["sgx_quote_collateral.json", "tdx_quote_collateral.json"] {
        std::fs::copy(d.join(c), coll.path().join(c)).unwrap();
    }
    let cdir = coll.path().to_str().unwrap();
    let (code, v) = run("sgx", &p("sgx_quote"), cdir, "2025-07-01T00:00:00Z");
    assert_eq!(
        (code, v["claims"]["tcb_status"].as_str()),
        (Some(0), Some("ConfigurationAndSWHardeningNeeded")),
        "{v}"
    );
    // Another platform's TDX quote (same FMSPC b0c06f000000): no TCB level matches.
    let (code, v) = run("tdx", &p("tdx-quote.hex"), cdir, "2025-07-01T00:00:00Z");
    assert_eq!(code, Some(1));
    assert!(
        v["error"].as_str().unwrap().contains("dcap.tcb_level"),
        "{v}"
    );
    // TDX v5 with its own collateral: no matching TCB level.
    let (code, v) = run(
        "tdx",
        &p("tdx_quote_outdated"),
        &p("tdx_quote_outdated_collateral.json"),
        "2026-03-01T00:00:00Z",
    );
    assert_eq!(code, Some(1));
    assert!(
        v["error"].as_str().unwrap().contains("dcap.tcb_level"),
        "{v}"
    );
    // Missing collateral names the FMSPC.
    let empty = tempfile::tempdir().unwrap();
    let (code, v) = run(
        "tdx",
        &p("tdx_quote_outdated"),
        empty.path().to_str().unwrap(),
        "2026-03-01T00:00:00Z",
    );
    assert_eq!(code, Some(1));
    assert!(v["error"].as_str().unwrap().contains("90C06F000000"), "{v}");
}

/// `ward serve` trusting a simulated TDX platform (`ward sim tdx init`):
/// ward's guest attesting as that TD receives the secret only with the
/// reference MRTD; `ward verify` without the simulator root configured
/// refuses its quotes. (Revocation: crates/sim/tests/tdx.rs.)
#[test]
fn ward_serve_releases_to_a_simulated_tdx_guest_with_the_reference_mrtd() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let init = |name: &str, extra: &[&str]| {
        let mut args = vec!["sim", "tdx", "init", "--dir"];
        let d = p(name);
        args.push(&d);
        args.extend_from_slice(extra);
        let out = ward(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cfg = init("sim", &[]);
    let data = dir.path().join("data");
    std::fs::write(
        p("ward.toml"),
        format!("data_dir = {:?}\n{cfg}", data.display().to_string()),
    )
    .unwrap();
    let s = serve(&data, &["--config", &p("ward.toml")]);
    let d = data.to_str().unwrap();
    std::fs::write(p("secret"), b"tdx-secret").unwrap();
    let admin = |args: &[&str]| {
        let mut a = vec!["admin", "--url", &s.url, "--data-dir", d];
        a.extend_from_slice(args);
        assert!(ward(&a).status.success());
    };
    admin(&["resource", "put", "kbs:///default/key/tdx", &p("secret")]);
    let good = "33".repeat(48);
    admin(&["reference-value", "set", "tdx_mrtd", &good]);

    let get = |sim: &str, m: &str| {
        ward(&[
            "get-resource",
            "--url",
            &s.url,
            "--tee",
            "sim-tdx",
            "--sim-dir",
            &p(sim),
            "--sim-measurement",
            m,
            "kbs:///default/key/tdx",
        ])
    };
    let out = get("sim", &good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"tdx-secret");
    let out = get("sim", &"44".repeat(48));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied by the KBS resource policy"));

    // Offline: the simulator's quote with its collateral directory.
    let q = p("quote.bin");
    let out = ward(&[
        "sim",
        "tdx",
        "quote",
        "--dir",
        &p("sim"),
        "--mr-td",
        &good,
        "-o",
        &q,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ward(&[
        "verify",
        "--tee",
        "tdx",
        "--evidence",
        &q,
        "--collateral",
        &p("sim/collateral"),
    ]);
    // Without the simulator root configured, the chain is refused.
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("dcap.pck_chain"),
        "{v}"
    );
}

/// Intel collateral managed with `ward admin collateral import|list`
/// (store-backed, no collateral directory): before the import the
/// attestation fails naming the FMSPC, after it the TD gets its secret.
#[test]
fn dcap_collateral_imported_with_ward_admin() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = ward(&["sim", "tdx", "init", "--dir", &p("sim")]);
    assert!(out.status.success());
    // Keep only the trust of the simulator root, not its collateral directory.
    let cfg: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("collateral_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    let data = dir.path().join("data");
    std::fs::write(
        p("ward.toml"),
        format!("data_dir = {:?}\n{cfg}", data.display().to_string()),
    )
    .unwrap();
    let s = serve(&data, &["--config", &p("ward.toml"), "--dev"]);
    let d = data.to_str().unwrap();
    let admin = |args: &[&str]| {
        let mut a = vec!["admin", "--url", &s.url, "--data-dir", d];
        a.extend_from_slice(args);
        ward(&a)
    };
    std::fs::write(p("secret"), b"imported").unwrap();
    assert!(
        admin(&["resource", "put", "kbs:///default/key/i", &p("secret")])
            .status
            .success()
    );
    let get = || {
        ward(&[
            "get-resource",
            "--url",
            &s.url,
            "--tee",
            "sim-tdx",
            "--sim-dir",
            &p("sim"),
            "kbs:///default/key/i",
        ])
    };
    let out = get();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let coll = std::fs::read_dir(dir.path().join("sim/collateral"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with("-tdx.json"))
        .unwrap();
    let fmspc = coll
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches("-tdx.json")
        .to_string();
    assert!(err.contains(&fmspc), "{err}");

    let out = admin(&["collateral", "import", coll.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&admin(&["collateral", "list"]).stdout).unwrap();
    assert_eq!(list[0]["key"], format!("TDX/{fmspc}"));
    let out = get();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"imported");
    // Garbage is refused with a clear error.
    std::fs::write(p("bad.json"), b"{\"tcb_info\": 1}").unwrap();
    let out = admin(&["collateral", "import", &p("bad.json")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("collateral JSON"));
}

/// `ward sim sgx quote` produces CoCo `sgx` evidence that `ward serve`
/// (trusting the simulator) verifies with the platform's SGX collateral.
#[test]
fn ward_serve_verifies_simulated_sgx_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = ward(&["sim", "tdx", "init", "--dir", &p("sim")]);
    assert!(out.status.success());
    let cfg = String::from_utf8(out.stdout).unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        p("ward.toml"),
        format!("data_dir = {:?}\n{cfg}", data.display().to_string()),
    )
    .unwrap();
    let s = serve(&data, &["--config", &p("ward.toml")]);
    let http = reqwest::blocking::Client::new();
    let (cookie, nonce) = kbs_auth(&http, &s.url, "sgx");
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let runtime = RuntimeData {
        nonce,
        tee_pubkey: key.public_jwk(),
    };
    let rd = hex::encode(runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap());
    let out = ward(&[
        "sim",
        "sgx",
        "quote",
        "--dir",
        &p("sim"),
        "--mr-enclave",
        &"ab".repeat(32),
        "--report-data",
        &rd,
        "--json",
        "-o",
        &p("ev.json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev: Value = serde_json::from_slice(&std::fs::read(p("ev.json")).unwrap()).unwrap();
    let r = http
        .post(format!("{}/kbs/v0/attest", s.url))
        .header("cookie", &cookie)
        .json(&json!({"init-data": null, "runtime-data": runtime,
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let token = r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    let sgx = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sgx"];
    assert_eq!(sgx["mr_enclave"], "ab".repeat(32));
    assert_eq!(
        (sgx["tcb_status"].as_str(), sgx["simulated"].as_bool()),
        (Some("UpToDate"), Some(true))
    );
}

/// `ward bench` against `ward serve --dev`: every mode completes its count
/// and reports consistent figures, server CPU included; without `--dev` the
/// fetch is denied and the bench says so instead of reporting numbers.
#[test]
fn bench_reports_each_mode_and_fails_on_denial() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"bench secret").unwrap();
    for (dev, name) in [(true, "dev"), (false, "prod")] {
        let data = dir.path().join(name);
        let s = serve(&data, if dev { &["--dev"] } else { &[] });
        admin_put(&s.url, &data, "kbs:///default/bench/key", &secret);
        let pid = s.child.id().to_string();
        let bench = |mode: &str, extra: &[&str]| {
            let mut args = vec![
                "bench",
                "--url",
                &s.url,
                "--mode",
                mode,
                "--concurrency",
                "2",
                "--count",
                "12",
                "--warmup",
                "2",
                "--server-pid",
                &pid,
                "--json",
            ];
            args.extend_from_slice(extra);
            ward(&args)
        };
        if !dev {
            let out = bench("flow", &[]);
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("denied by the KBS resource policy"), "{err}");
            continue;
        }
        for (mode, extra) in [
            ("attest", &[][..]),
            ("flow", &[]),
            ("get", &[]),
            ("get", &["--bearer"]),
            ("healthz", &[]),
        ] {
            let out = bench(mode, extra);
            assert!(
                out.status.success(),
                "{mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r["mode"], mode);
            assert_eq!(r["operations"], 12, "{r}");
            let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
            assert!(f("rate_per_sec") > 0.0, "{r}");
            assert!(
                0.0 < f("p50_ms") && f("p50_ms") <= f("p90_ms") && f("p90_ms") <= f("p99_ms"),
                "{r}"
            );
            assert!(f("server_cpu_ms_per_op") > 0.0, "{r}");
            assert!(f("server_rss_kib") > 1024.0, "{r}");
            assert!(
                f("reference_jwe_p256_us") > 0.0 && f("reference_es256_sign_us") > 0.0,
                "{r}"
            );
            assert!(r.get("runs").is_none(), "one run lists no runs: {r}");
            // Neither is pinned here: the server can use the bench's CPUs.
            assert_eq!(r["shared_cpus"], true, "{r}");
        }
        // Several runs: each is reported, latencies cover all operations and
        // the CPU figure is the median run's (the lower one of two).
        let out = bench("flow", &["--runs", "2"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["operations"], 24, "{r}");
        let runs = r["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("runs in {r}"));
        assert_eq!(runs.len(), 2, "{r}");
        let cpu: Vec<f64> = runs
            .iter()
            .map(|x| x["server_cpu_ms_per_op"].as_f64().unwrap())
            .collect();
        assert!(cpu.iter().all(|c| *c > 0.0), "{r}");
        assert_eq!(
            r["server_cpu_ms_per_op"].as_f64(),
            Some(cpu[0].min(cpu[1])),
            "{r}"
        );
        let text = ward(&[
            "bench",
            "--url",
            &s.url,
            "--mode",
            "get",
            "--concurrency",
            "1",
            "--count",
            "3",
            "--warmup",
            "0",
            "--server-pid",
            &pid,
            "--runs",
            "3",
        ]);
        assert!(text.status.success());
        let text = String::from_utf8_lossy(&text.stdout);
        for needle in [
            "run 1: ",
            "run 2: ",
            "run 3: ",
            "operations 9 ",
            "(median of 3 runs)",
            "note: the server may run on this load generator's CPUs",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(!ward(&["bench", "--url", &s.url, "--runs", "0"])
            .status
            .success());
    }
}

/// Issue 18, item 7: `ward verify … | head` used to panic on the closed
/// pipe; every command now ends quietly.
#[test]
fn a_closed_output_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = dir.path().join("e.json");
    std::fs::write(
        &evidence,
        serde_json::to_vec(&json!({"svn": "1", "report_data": b64::std_encode([0u8; 48])}))
            .unwrap(),
    )
    .unwrap();
    let initdata = dir.path().join("init.toml");
    std::fs::write(
        &initdata,
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package p\"\n",
    )
    .unwrap();
    for args in [
        vec![
            "verify",
            "--tee",
            "sample",
            "--evidence",
            evidence.to_str().unwrap(),
        ],
        vec!["initdata", "digest", initdata.to_str().unwrap()],
        vec!["--help"],
    ] {
        let mut child = Command::new(WARD)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

/// Issue 18, item 7: admin tokens are limited to one day by default (the
/// bootstrap token excepted), and `--lifetime -120` mints an expired token.
#[test]
fn admin_token_lifetimes_are_bounded_and_negative_lifetimes_mint_expired_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = serve(&data, &[]);
    let key = data.join("admin/admin-key.pem");
    let mint = |lifetime: &str| {
        let out = ward(&[
            "admin",
            "token",
            "--key",
            key.to_str().unwrap(),
            "--lifetime",
            lifetime,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let list = |token: &str| {
        ward(&[
            "admin", "--url", &s.url, "--token", token, "resource", "list",
        ])
    };
    assert!(list(&mint("3600")).status.success());
    for (lifetime, why) in [("172800", "max_token_lifetime_secs"), ("-120", "expired")] {
        let out = list(&mint(lifetime));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{lifetime}: {err}"
        );
    }
    // The bootstrap token (a year) is the exception.
    let d = data.to_str().unwrap();
    let out = ward(&[
        "admin",
        "--url",
        &s.url,
        "--data-dir",
        d,
        "resource",
        "list",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its own rotation: a new key and token, taking effect on the running
    // server at once; the old token is refused from then on.
    let old = std::fs::read_to_string(data.join("admin/admin-token")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ward(&["admin", "--data-dir", d, "rotate-bootstrap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = std::fs::read_to_string(data.join("admin/admin-token")).unwrap();
    assert_ne!(old, new);
    let out = ward(&[
        "admin",
        "--url",
        &s.url,
        "--data-dir",
        d,
        "resource",
        "list",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = list(old.trim());
    assert!(
        !out.status.success(),
        "the rotated-out bootstrap token still works"
    );
}

/// Issue 18, items 6.1, 6.2 and 6.6 on real evidence: the TEE is detected
/// when `--tee` is left out (raw SNP as hex, base64 and with the Azure IGVM
/// header after it; raw quotes), a raw SGX quote is no TDX evidence and the
/// other way round, and Azure TDX evidence is verified with the
/// `--collateral` given (it used to be ignored offline).
#[test]
fn verify_detects_the_tee_refuses_mixed_quotes_and_uses_collateral_for_azure_tdx() {
    let Some(f) = ward_proto::testing::fixtures("dcap-phala") else {
        return;
    };
    let p = |rel: &str| f.join(rel).to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| ward_json(args);
    let sgx = p("dcap-phala/sgx_quote");
    let tdx = p("dcap-phala/tdx_quote");
    // Detected, and verified with their collateral.
    for (q, coll, tee) in [
        (&sgx, p("dcap-phala/sgx_quote_collateral.json"), "sgx"),
        (&tdx, p("dcap-phala/tdx_quote_collateral.json"), "tdx"),
    ] {
        let (code, v) = run(&[
            "verify",
            "--evidence",
            q,
            "--collateral",
            &coll,
            "--as-of",
            "2025-07-01",
        ]);
        assert_eq!((code, v["tee"].as_str()), (Some(0), Some(tee)), "{v}");
    }
    // Mixed: refused by name, as the JSON path does.
    for (q, tee, is) in [(&sgx, "tdx", "sgx"), (&tdx, "sgx", "tdx")] {
        let (code, v) = run(&["verify", "--tee", tee, "--evidence", q]);
        assert_eq!(code, Some(1), "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains(&format!("raw {is} quote")),
            "{v}"
        );
    }
    // Azure TDX with --collateral: the TD quote is checked against it (this
    // set is for another FMSPC, so the refusal names the collateral, not a
    // missing source).
    if let Some(t) = ward_proto::testing::fixtures("trustee/az-tdx-vtpm") {
        let ev = t.join("trustee/az-tdx-vtpm/evidence-v1.json");
        let (code, v) = run(&[
            "verify",
            "--evidence",
            ev.to_str().unwrap(),
            "--collateral",
            &p("dcap-phala/tdx_quote_collateral.json"),
            "--as-of",
            "2025-07-01",
        ]);
        assert_eq!(v["tee"], "az-tdx-vtpm", "{v}");
        assert_eq!(code, Some(1), "{v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("dcap.collateral") && e.contains("the PCK certificate says 00806F050000"),
            "{e}"
        );
    }
    // Raw SNP: hex (the fixture), base64, and 1204 bytes with a trailer.
    if let Some(s) = ward_proto::testing::fixtures("snp-virtee-sev-milan") {
        let d = s.join("snp-virtee-sev-milan");
        let text = std::fs::read_to_string(d.join("report_milan.hex")).unwrap();
        let bytes = hex::decode(text.trim()).unwrap();
        let b64f = dir.path().join("report.b64");
        std::fs::write(&b64f, b64::std_encode(&bytes)).unwrap();
        let igvm = dir.path().join("report.igvm");
        std::fs::write(&igvm, [bytes.clone(), vec![0u8; 20]].concat()).unwrap();
        for ev in [d.join("report_milan.hex"), b64f, igvm] {
            let (code, v) = run(&[
                "verify",
                "--evidence",
                ev.to_str().unwrap(),
                "--vcek",
                d.join("vcek_milan.der").to_str().unwrap(),
                "--cert-chain",
                d.join("cert_chain_milan").to_str().unwrap(),
                "--as-of",
                "2025-01-01T00:00:00Z",
            ]);
            assert_eq!(
                (code, v["tee"].as_str()),
                (Some(0), Some("snp")),
                "{ev:?}: {v}"
            );
        }
    }
}

/// Issue 18, "must show": the offline `ward verify` path and the path
/// `ward serve` verifies with (its registry built from a `[snp]`/`[dcap]`
/// configuration) give the same verdict and the same claims on every
/// fixture, each as of its documented time.
#[test]
fn offline_verify_and_the_served_registry_agree_on_every_fixture() {
    let Some(f) = ward_proto::testing::fixtures("amd-roots") else {
        return;
    };
    let roots: Vec<std::path::PathBuf> = std::fs::read_dir(f.join("amd-roots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    let dcap = f.join("dcap-phala");
    let mut cfg = ward_kbs::Config::default();
    cfg.snp.cert_chains = roots.clone();
    cfg.dcap.collateral_dir = Some(dcap.clone());
    let served = ward_collateral::registry(&cfg.collateral(), None).unwrap();
    let quote = |name: &str| {
        let raw = std::fs::read(dcap.join(name)).unwrap();
        json!({"quote": b64::std_encode(raw)})
    };
    let json_file = |rel: &str| -> Value {
        serde_json::from_slice(&std::fs::read(f.join(rel)).unwrap()).unwrap()
    };
    // (name, TEE, primary evidence, as of, expected verdict)
    let table: Vec<(&str, &str, Value, &str, &str)> = vec![
        (
            "snp genoa",
            "snp",
            json_file("trustee/snp/genoa-evidence.json"),
            "2025-10-01T00:00:00Z",
            "valid",
        ),
        (
            "az-snp-vtpm v1",
            "az-snp-vtpm",
            json_file("trustee/az-snp-vtpm/evidence-v1.json"),
            "2025-10-01T00:00:00Z",
            "valid",
        ),
        (
            "az-snp-vtpm v2",
            "az-snp-vtpm",
            json_file("trustee/az-snp-vtpm/evidence-v2.json"),
            "2025-10-01T00:00:00Z",
            "valid",
        ),
        (
            "az-snp-vtpm genoa",
            "az-snp-vtpm",
            json_file("trustee/az-snp-vtpm/evidence-genoa.json"),
            "2025-10-01T00:00:00Z",
            "valid",
        ),
        (
            "az-tdx-vtpm",
            "az-tdx-vtpm",
            json_file("trustee/az-tdx-vtpm/evidence-v1.json"),
            "2025-07-01T00:00:00Z",
            "invalid",
        ),
        (
            "sgx v3",
            "sgx",
            quote("sgx_quote"),
            "2025-07-01T00:00:00Z",
            "valid",
        ),
        (
            "tdx v4",
            "tdx",
            quote("tdx_quote"),
            "2025-07-01T00:00:00Z",
            "valid",
        ),
        (
            "tdx v5",
            "tdx",
            quote("tdx_quote_outdated"),
            "2026-03-01T00:00:00Z",
            "invalid",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, tee, evidence, as_of, verdict) in table {
        let file = dir.path().join("evidence.json");
        std::fs::write(&file, serde_json::to_vec(&evidence).unwrap()).unwrap();
        let mut args = vec![
            "verify".to_string(),
            "--tee".into(),
            tee.into(),
            "--evidence".into(),
            file.display().to_string(),
            "--collateral".into(),
            dcap.display().to_string(),
            "--as-of".into(),
            as_of.into(),
        ];
        for r in &roots {
            args.push("--cert-chain".into());
            args.push(r.display().to_string());
        }
        let (_, offline) = ward_json(&args);
        let now =
            time::OffsetDateTime::parse(as_of, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp();
        let ev = ward_proto::kbs::TeeEvidence {
            primary_evidence: evidence,
            additional_evidence: String::new(),
        };
        let serve =
            ward_collateral::fetch::verify_waiting(std::time::Duration::from_secs(30), || {
                served.verify_evidence(&ward_proto::Tee::new(tee), &ev, now)
            });
        assert_eq!(offline["verdict"], verdict, "{name}: offline {offline}");
        match serve {
            Ok(c) => {
                assert_eq!(verdict, "valid", "{name}: served says valid");
                assert_eq!(offline["claims"], c.claims, "{name}: claims differ");
            }
            Err(e) => {
                assert_eq!(verdict, "invalid", "{name}: served says {e}");
                assert_eq!(offline["error"], e.to_string(), "{name}: errors differ");
            }
        }
    }
}

/// Issue 18, item 6.6: the raw PCS files of one collateral set (TCB info and
/// QE identity responses, issuer chain, CRLs) are accepted as `--collateral`
/// files, not only inside a directory. Built here from the flat fixture,
/// keeping the signed JSON text exactly.
#[test]
fn verify_takes_raw_pcs_collateral_files() {
    let Some(f) = ward_proto::testing::fixtures("dcap-phala") else {
        return;
    };
    let d = f.join("dcap-phala");
    let flat: Value =
        serde_json::from_slice(&std::fs::read(d.join("sgx_quote_collateral.json")).unwrap())
            .unwrap();
    let s = |k: &str| flat[k].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "tcb_info.json",
            format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                s("tcb_info"),
                s("tcb_info_signature")
            )
            .into_bytes(),
        ),
        (
            "qe_identity.json",
            format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                s("qe_identity"),
                s("qe_identity_signature")
            )
            .into_bytes(),
        ),
        (
            "tcb_info_issuer_chain.pem",
            s("tcb_info_issuer_chain").into_bytes(),
        ),
        ("pck_crl.der", hex::decode(s("pck_crl")).unwrap()),
        ("root_ca_crl.der", hex::decode(s("root_ca_crl")).unwrap()),
    ];
    let mut args = vec![
        "verify".to_string(),
        "--evidence".into(),
        d.join("sgx_quote").display().to_string(),
        "--as-of".into(),
        "2025-07-01".into(),
    ];
    for (name, body) in &files {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        args.push("--collateral".into());
        args.push(p.display().to_string());
    }
    let run = |args: &[String]| ward_json(args);
    let (code, v) = run(&args);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
    assert_eq!(
        v["claims"]["tcb_status"], "ConfigurationAndSWHardeningNeeded",
        "{v}"
    );
    // A set with a piece missing names it.
    let short: Vec<String> = args[..args.len() - 2].to_vec();
    let (code, v) = run(&short);
    assert_eq!(code, Some(2), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("missing the root CA CRL"),
        "{v}"
    );
}

/// Issue 18, item 6.4: AMD's VCEK chains are built in, so real VCEK
/// evidence verifies with no `--cert-chain` (and through the registry
/// `ward serve` builds from an empty `[snp]`); a bundle led by its VCEK
/// supplies the VCEK; VLEK evidence names the ASVK chain to configure and
/// verifies once it is given.
#[test]
fn snp_evidence_verifies_without_configured_chains() {
    let Some(f) = ward_proto::testing::fixtures("trustee/snp") else {
        return;
    };
    let t = f.join("trustee/snp");
    let p = |x: &std::path::Path| x.display().to_string();
    for (ev, tee) in [
        (t.join("genoa-evidence.json"), "snp"),
        (
            f.join("trustee/az-snp-vtpm/evidence-v1.json"),
            "az-snp-vtpm",
        ),
    ] {
        let (code, v) = ward_json(&["verify", "--evidence", &p(&ev), "--as-of", "2025-10-01"]);
        assert_eq!((code, v["tee"].as_str()), (Some(0), Some(tee)), "{v}");
    }
    let served = ward_collateral::registry(&Default::default(), None).unwrap();
    let ev: Value =
        serde_json::from_slice(&std::fs::read(t.join("genoa-evidence.json")).unwrap()).unwrap();
    let c = served
        .verify_evidence(
            &ward_proto::Tee::new("snp"),
            &ward_proto::kbs::TeeEvidence {
                primary_evidence: ev,
                additional_evidence: String::new(),
            },
            1_759_276_800,
        )
        .unwrap();
    assert_eq!(c.claims["product"], "Genoa");

    let dir = tempfile::tempdir().unwrap();
    // VCEK, ASK, ARK in one file: the report needs no --vcek.
    let vcek = std::fs::read(t.join("milan-vcek.der")).unwrap();
    let mut led = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64::std_encode(&vcek)
    )
    .into_bytes();
    led.extend(std::fs::read(f.join("amd-roots/ask_ark_milan.pem")).unwrap());
    let bundle = dir.path().join("vcek-ask-ark.pem");
    std::fs::write(&bundle, led).unwrap();
    let (code, v) = ward_json(&[
        "verify",
        "--tee",
        "snp",
        "--evidence",
        &p(&t.join("milan-report.bin")),
        "--cert-chain",
        &p(&bundle),
        "--as-of",
        "2025-01-01",
    ]);
    assert_eq!(code, Some(0), "{v}");

    // VLEK: not built in, and the error says what to configure.
    let vlek = [
        "verify",
        "--tee",
        "snp",
        "--evidence",
        &p(&t.join("milan-vlek-report.bin")),
        "--vcek",
        &p(&t.join("milan-vlek.der")),
        "--as-of",
        "2025-01-01",
    ];
    let (code, v) = ward_json(&vlek);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(1), Some("invalid")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("https://kdsintf.amd.com/vlek/v1/Milan/cert_chain"),
        "{v}"
    );
    let chain = p(&f.join("amd-roots/ask_ark_milan_vlek.pem"));
    let mut with_chain = vlek.to_vec();
    with_chain.extend(["--cert-chain", &chain]);
    let (code, v) = ward_json(&with_chain);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
}

#[test]
fn a_pod_policy_bound_in_init_data_decides_which_pod_gets_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (s, sim_dir, data) = snp_service(dir.path());
    let d = data.to_str().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"model-key").unwrap();
    admin_put(&s.url, &data, "kbs:///default/model/key", &secret);
    let good = "11".repeat(48);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--url", &s.url, "--data-dir", d];
        all.extend_from_slice(args);
        let out = ward(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin(&["reference-value", "set", "snp_launch_measurement", &good]);

    // Two builds of the app: the owner's, and another with the same name.
    let ours = write_layout(
        &dir.path().join("ours"),
        "1.0",
        json!({"Entrypoint": ["/app"]}),
    );
    let theirs = write_layout(
        &dir.path().join("theirs"),
        "1.0",
        json!({"Entrypoint": ["/app", "--evil"]}),
    );
    assert_ne!(ours, theirs);
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: app, image: \"example.test/app:1.0\"}\n";
    // `ward policy generate` → the init-data annotation of the template.
    let init_data_of = |layout: &str| -> PathBuf {
        let yaml = dir.path().join(format!("{layout}.yaml"));
        std::fs::write(&yaml, deployment).unwrap();
        let out = ward(&[
            "policy",
            "generate",
            "-f",
            yaml.to_str().unwrap(),
            "--kbs-url",
            &s.url,
            "--image-layout",
            &format!("example.test/app:1.0={}", dir.path().join(layout).display()),
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml).unwrap()).unwrap();
        let ann = doc["spec"]["template"]["metadata"]["annotations"]
            ["io.katacontainers.config.hypervisor.cc_init_data"]
            .as_str()
            .unwrap();
        let p = dir.path().join(format!("{layout}.init"));
        std::fs::write(&p, ann).unwrap();
        p
    };
    let ours_init = init_data_of("ours");
    let theirs_init = init_data_of("theirs");

    // The secret is released only to a pod whose policy pins our digest.
    let policy = dir.path().join("model.rego");
    std::fs::write(
        &policy,
        format!(
            "package policy\nimport rego.v1\ndefault allow := false\nallow if {{\n  ae := input.submods.cpu0[\"ear.veraison.annotated-evidence\"]\n  input.submods.cpu0[\"ear.status\"] == \"affirming\"\n  some c in ae.init_data_claims.agent_policy.containers\n  \"example.test/app@{ours}\" in c.pull_sources\n}}\n"
        ),
    )
    .unwrap();
    admin(&[
        "resource-policy",
        "set",
        "--prefix",
        "default/model",
        policy.to_str().unwrap(),
    ]);
    let get = |init: &Path| {
        sim_snp_guest(
            &["get-resource", "kbs:///default/model/key"],
            &s.url,
            &sim_dir,
            &good,
            &["--init-data", init.to_str().unwrap()],
        )
    };
    let out = get(&ours_init);
    assert_eq!(
        out.stdout,
        b"model-key",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = get(&theirs_init);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied by the KBS resource policy"));

    // The token carries the policy's data among the init-data claims.
    let out = sim_snp_guest(
        &["attest", "--claims"],
        &s.url,
        &sim_dir,
        &good,
        &["--init-data", ours_init.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ae = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(
        ae["init_data_claims"]["agent_policy"]["containers"][1]["pull_sources"][0],
        format!("example.test/app@{ours}")
    );
    assert!(ae["init_data_claims"]["policy.rego"]
        .as_str()
        .unwrap()
        .starts_with("# ward's Kata agent policy"));
}

/// `ward audit <args>` against `s` with the data directory's admin token.
fn audit(s: &Server, data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--url", &s.url, "--data-dir", data.to_str().unwrap()]);
    all.extend_from_slice(&args[1..]);
    ward(&all)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn the_audit_log_is_fetched_followed_and_verified_and_a_row_changed_in_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = serve(&data, &["--dev"]);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"audited-secret").unwrap();
    admin_put(&s.url, &data, "kbs:///default/test/key", &secret);
    let out = ward(&["get-resource", "--url", &s.url, "kbs:///default/test/key"]);
    assert_eq!(out.stdout, b"audited-secret", "{}", stderr(&out));

    // tail --once from 0: every entry so far, decoded.
    let out = audit(&s, &data, &["tail", "--from", "0", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kinds: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["entry"]["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["start", "start", "start", "admin", "attestation", "release"]
    );

    let (log, cp) = (dir.path().join("log.jsonl"), dir.path().join("cp"));
    let fetch = || {
        audit(
            &s,
            &data,
            &[
                "fetch",
                "--log",
                log.to_str().unwrap(),
                "--checkpoint",
                cp.to_str().unwrap(),
            ],
        )
    };
    assert!(fetch().status.success());
    let token = std::fs::read_to_string(data.join("admin/admin-token")).unwrap();
    let keys: Value = reqwest::blocking::Client::new()
        .get(format!("{}/kbs/v0/audit/keys", s.url))
        .bearer_auth(token.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = keys["keys"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let verify = |log: &Path, cp: &Path, mirror: Option<&Path>| {
        let mut a = vec![
            "audit",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--checkpoint",
            cp.to_str().unwrap(),
            "--key",
            &key,
        ];
        if let Some(m) = mirror {
            a.extend_from_slice(&["--mirror", m.to_str().unwrap()]);
        }
        ward(&a)
    };
    let out = verify(&log, &cp, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let (mirror, trusted) = (
        dir.path().join("mirror.jsonl"),
        dir.path().join("trusted-cp"),
    );
    std::fs::copy(&log, &mirror).unwrap();
    std::fs::copy(&cp, &trusted).unwrap();

    let db = rusqlite::Connection::open(data.join("ward.db")).unwrap();
    let row = |i: i64| -> (Vec<u8>, Vec<u8>) {
        db.query_row(
            "SELECT leaf, hash FROM audit_log WHERE idx = ?1",
            [i],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let set = |i: i64, (leaf, hash): &(Vec<u8>, Vec<u8>)| {
        db.execute(
            "UPDATE audit_log SET leaf = ?2, hash = ?3 WHERE idx = ?1",
            rusqlite::params![i, leaf, hash],
        )
        .unwrap();
    };
    let (r3, r4) = (row(3), row(4));
    let forged = String::from_utf8(r4.0.clone())
        .unwrap()
        .replace("attestation", "attestatioN")
        .into_bytes();
    let forged_hash = ward_audit::merkle::leaf_hash(&forged).to_vec();
    let expect_refused = |out: Output, words: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(words),
            "{words:?} not in {}",
            stderr(&out)
        );
    };
    // 1. A leaf changed in place: named by its stored hash.
    set(4, &(forged.clone(), r4.1.clone()));
    assert!(fetch().status.success());
    expect_refused(verify(&log, &trusted, None), "entry 4 was changed");
    // 2. Leaf and hash changed: the trusted checkpoint no longer matches,
    // and the copy verified before names the entry.
    set(4, &(forged, forged_hash));
    assert!(fetch().status.success());
    expect_refused(
        verify(&log, &trusted, None),
        "do not hash to the checkpoint's root",
    );
    expect_refused(
        verify(&log, &trusted, Some(&mirror)),
        "entry 4 differs from the copy verified before",
    );
    // 3. Two rows swapped.
    set(3, &r4);
    set(4, &r3);
    assert!(fetch().status.success());
    expect_refused(verify(&log, &trusted, Some(&mirror)), "entry 3 differs");
    set(3, &r3);
    set(4, &r4);
    assert!(fetch().status.success());
    assert!(verify(&log, &trusted, Some(&mirror)).status.success());
    // 4. A row deleted: fetching names the gap.
    db.execute("DELETE FROM audit_log WHERE idx = 2", [])
        .unwrap();
    let out = fetch();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("entry 2 is missing"),
        "{}",
        stderr(&out)
    );
}
