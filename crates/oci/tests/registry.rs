//! The registry client against a real distribution registry (Debian's
//! `docker-registry`, started here on 127.0.0.1; `.ci/run` installs it),
//! filled with images this test builds: layers, config, manifests and an
//! index with two platforms, and a private repository behind basic auth.
//! Skips with a notice when the registry binary is absent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use ward_oci::registry::{Credentials, Options, Registry};
use ward_oci::testing::{free_port, registry_bin, start, Pusher, INDEX, MANIFEST};
use ward_oci::{Digest, ImageError, Platform, Reference};

fn client(opts: Options) -> Registry {
    Registry::new(opts).unwrap()
}

fn insecure(addr: &str) -> Options {
    Options {
        insecure: vec![addr.to_string()],
        timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

#[test]
fn reads_a_multi_platform_image_from_a_real_registry() {
    let Some(bin) = registry_bin() else { return };
    let reg = start(&bin, None);
    let p = Pusher::new(&reg.addr, None);
    let amd = p.image(
        "team/app",
        "app",
        b"app:x:1000:1000::/srv:/bin/sh\n",
        "amd64",
    );
    let arm = p.image("team/app", "root", b"root:x:0:0::/:/bin/sh\n", "arm64");
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [arm, amd]});
    let top = p.manifest("team/app", "v1", INDEX, &index);

    let r = client(insecure(&reg.addr));
    let m = r
        .image(&Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap())
        .unwrap();
    assert_eq!(m.manifest_digest.to_string(), amd["digest"]);
    assert_eq!((m.user.as_str(), m.working_dir.as_str()), ("app", "/srv"));
    assert_eq!(m.env, ["PATH=/bin", "ARCH=amd64"]);
    assert_eq!(
        (m.entrypoint.clone(), m.cmd.clone()),
        (vec!["/run.sh".to_string()], vec!["serve".to_string()])
    );
    assert_eq!(
        m.user_databases.passwd.as_deref(),
        Some(&b"app:x:1000:1000::/srv:/bin/sh\n"[..])
    );
    assert_eq!(
        m.user_databases.group, None,
        "the whiteout removed /etc/group"
    );
    assert_eq!(m.layers.len(), 2);

    // Pinned by the index's digest, for another platform.
    let arm_client = client(Options {
        platform: Platform::parse("linux/arm64").unwrap(),
        ..insecure(&reg.addr)
    });
    let pinned = format!("{}/team/app@{}", reg.addr, top["digest"].as_str().unwrap());
    let m = arm_client
        .image(&Reference::parse(&pinned).unwrap())
        .unwrap();
    assert_eq!(m.user, "root");

    // A mirror: the reference names another registry, the mirror serves it.
    let mut mirrored = insecure(&reg.addr);
    mirrored.mirrors.insert("ghcr.io".into(), reg.addr.clone());
    let m = client(mirrored)
        .image(&Reference::parse("ghcr.io/team/app:v1").unwrap())
        .unwrap();
    assert_eq!(m.manifest_digest.to_string(), amd["digest"]);

    // With a layer cache, a second generation does not fetch the layers:
    // it works even once the registry has lost them.
    let cache_dir = tempfile::tempdir().unwrap();
    let cached = client(Options {
        cache: Some(ward_oci::LayerCache::new(cache_dir.path())),
        ..insecure(&reg.addr)
    });
    let reference = Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let first = cached.image(&reference).unwrap();
    for l in &first.layers {
        let r = p
            .req(
                reqwest::Method::DELETE,
                &format!("{}/v2/team/app/blobs/{l}", p.base),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text());
    }
    assert_eq!(cached.image(&reference).unwrap(), first);
    let e = r.image(&reference).unwrap_err();
    assert!(
        matches!(e, ImageError::NotFound(_)),
        "without the cache the layers are gone: {e}"
    );

    // A missing tag, a digest that is not there, and a platform it lacks.
    let e = r
        .image(&Reference::parse(&format!("{}/team/app:v2", reg.addr)).unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, ImageError::NotFound(m) if m.contains("manifest v2 not found in")),
        "{e}"
    );
    let absent = format!("{}/team/app@{}", reg.addr, Digest::sha256_of(b"nothing"));
    assert!(matches!(
        r.image(&Reference::parse(&absent).unwrap()),
        Err(ImageError::NotFound(_))
    ));
    let s390 = client(Options {
        platform: Platform::parse("linux/s390x").unwrap(),
        ..insecure(&reg.addr)
    });
    let e = s390
        .image(&Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("no manifest for linux/s390x"), "{e}");
}

#[test]
fn a_private_repository_needs_the_right_password() {
    let Some(bin) = registry_bin() else { return };
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let reg = start(&bin, Some(&format!("ward:{hash}")));
    let p = Pusher::new(&reg.addr, Some(("ward", "s3cret")));
    let m = p.image("private/app", "app", b"app:x:5:5::/:/bin/sh\n", "amd64");
    let mut plain = m.clone();
    plain.as_object_mut().unwrap().remove("platform");
    let reference = Reference::parse(&format!(
        "{}/private/app@{}",
        reg.addr,
        m["digest"].as_str().unwrap()
    ))
    .unwrap();

    // From a Docker config.json, as `docker login` writes it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let write = |pw: &str| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ward:{pw}"));
        std::fs::write(
            &cfg,
            json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
        )
        .unwrap();
    };
    write("s3cret");
    let ok = client(Options {
        credentials: Credentials::from_docker_config(&cfg).unwrap(),
        ..insecure(&reg.addr)
    });
    assert_eq!(ok.image(&reference).unwrap().user, "app");

    write("wrong");
    let bad = client(Options {
        credentials: Credentials::from_docker_config(&cfg).unwrap(),
        ..insecure(&reg.addr)
    });
    let e = bad.image(&reference).unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    assert!(
        !e.to_string().contains("wrong"),
        "the password never appears: {e}"
    );

    let none = client(insecure(&reg.addr));
    let e = none.image(&reference).unwrap_err();
    assert!(e.to_string().contains("none are configured"), "{e}");
}

/// A registry that answers every manifest request with `body` and a
/// `Docker-Content-Digest` of another content.
fn lying_registry(body: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let other = Digest::sha256_of(b"other");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST}\r\nDocker-Content-Digest: {other}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    addr
}

#[test]
fn lying_and_unreachable_registries_fail_clearly() {
    let addr = lying_registry(r#"{"schemaVersion":2}"#);
    let r = client(insecure(&addr));
    let e = r
        .image(&Reference::parse(&format!("{addr}/a:v1")).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("content has digest"), "{e}");
    // Pinned to a digest the bytes do not have.
    let pinned = format!("{addr}/a@{}", Digest::sha256_of(b"pinned"));
    let e = r.image(&Reference::parse(&pinned).unwrap()).unwrap_err();
    assert!(e.to_string().contains("content has digest"), "{e}");

    let closed = format!("127.0.0.1:{}", free_port());
    let e = client(insecure(&closed))
        .image(&Reference::parse(&format!("{closed}/a:v1")).unwrap())
        .unwrap_err();
    assert!(matches!(e, ImageError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("http://{closed}/v2/a/manifests/v1: ")),
        "{e}"
    );
}
