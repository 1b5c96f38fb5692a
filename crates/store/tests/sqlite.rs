//! SqliteStore behaviour: persistence across reopen, encryption at rest,
//! wrong KEK, concurrent processes' view, versions.

use std::time::Duration;

use serde_json::json;
use ward_store::{Kek, PolicyKind, ReferenceValue, SqliteStore, Store, StoreError};

fn kek(b: u8) -> Kek {
    Kek::from_bytes([b; 32])
}

#[test]
fn accepts_roundtrip_and_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    {
        let s = SqliteStore::open(&db, kek(1)).unwrap();
        let m1 = s
            .put_resource("default/test/key", b"secret-bytes", 10)
            .unwrap();
        let m2 = s
            .put_resource("default/test/key", b"secret-bytes-2", 11)
            .unwrap();
        assert!(m2.version > m1.version);
        s.put_policy(PolicyKind::Resource, "default", "package policy", 1)
            .unwrap();
        s.put_reference_value(
            &ReferenceValue {
                name: "svn".into(),
                single: false,
                values: vec![json!("1")],
                expires_at: None,
                version: 0,
                updated_at: 0,
            },
            1,
        )
        .unwrap();
        assert!(s.add_key("cookie", "k1", b"material", 5).unwrap());
        assert!(
            !s.add_key("cookie", "k1", b"other", 6).unwrap(),
            "existing key kept"
        );
    }
    let s = SqliteStore::open(&db, kek(1)).unwrap();
    let r = s.get_resource("default/test/key").unwrap().unwrap();
    assert_eq!(r.data, b"secret-bytes-2");
    assert_eq!(r.meta.size, 14);
    assert_eq!(s.list_resources().unwrap().len(), 1);
    assert_eq!(
        s.get_policy(PolicyKind::Resource, "default")
            .unwrap()
            .unwrap()
            .text,
        "package policy"
    );
    assert_eq!(
        s.get_reference_value("svn").unwrap().unwrap().values,
        vec![json!("1")]
    );
    let keys = s.keys("cookie").unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].material, b"material");
    assert!(s.delete_resource("default/test/key").unwrap());
    assert!(!s.delete_resource("default/test/key").unwrap());
    assert!(s.get_resource("default/test/key").unwrap().is_none());
}

#[test]
fn secrets_are_not_stored_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    let s = SqliteStore::open(&db, kek(2)).unwrap();
    let marker = b"PLAINTEXT-MARKER-0123456789";
    s.put_resource("a/b/c", marker, 1).unwrap();
    s.add_key("ring", "id", marker, 1).unwrap();
    drop(s);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker));
    }
}

#[test]
fn rejects_wrong_kek_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    SqliteStore::open(&db, kek(3))
        .unwrap()
        .put_resource("a/b/c", b"x", 1)
        .unwrap();
    let err = SqliteStore::open(&db, kek(4)).unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
}

#[test]
fn two_handles_on_one_file_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    // Zero refresh: `a` reads the change counters from the file every time.
    let a = SqliteStore::open(&db, kek(5))
        .unwrap()
        .with_refresh(Duration::ZERO);
    let b = SqliteStore::open(&db, kek(5)).unwrap();
    a.put_policy(PolicyKind::Attestation, "default", "p1", 1)
        .unwrap();
    let v1 = b
        .policy_version(PolicyKind::Attestation, "default")
        .unwrap()
        .unwrap();
    b.put_policy(PolicyKind::Attestation, "default", "p2", 2)
        .unwrap();
    assert!(
        a.policy_version(PolicyKind::Attestation, "default")
            .unwrap()
            .unwrap()
            > v1
    );
    let g = a.reference_values_generation().unwrap();
    b.put_reference_value(
        &ReferenceValue {
            name: "m".into(),
            single: false,
            values: vec![],
            expires_at: Some(9),
            version: 0,
            updated_at: 0,
        },
        1,
    )
    .unwrap();
    assert!(a.reference_values_generation().unwrap() > g);
}

fn rv(name: &str) -> ReferenceValue {
    ReferenceValue {
        name: name.into(),
        single: false,
        values: vec![],
        expires_at: None,
        version: 0,
        updated_at: 0,
    }
}

#[test]
fn change_counters_are_reused_until_a_local_write_or_the_refresh_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    // A refresh time no test outlives: only local writes renew the counters.
    let a = SqliteStore::open(&db, kek(5))
        .unwrap()
        .with_refresh(Duration::from_secs(3600));
    let b = SqliteStore::open(&db, kek(5)).unwrap();
    let g0 = a.generations().unwrap();
    b.put_resource("r/t/k", b"x", 1).unwrap();
    b.put_reference_value(&rv("m"), 1).unwrap();
    // Another process's writes are not seen before the refresh time ...
    assert_eq!(a.generations().unwrap(), g0);
    // ... but the file has them, and a local write renews everything.
    a.put_policy(PolicyKind::Resource, "default", "package policy", 1)
        .unwrap();
    let g1 = a.generations().unwrap();
    assert!(g1.resources > g0.resources);
    assert!(g1.reference_values > g0.reference_values);
    assert!(g1.policies > g0.policies);
    assert_eq!(g1, b.generations().unwrap());
    // A local write that changes nothing renews them too.
    b.put_resource("r/t/k", b"y", 2).unwrap();
    assert_eq!(a.generations().unwrap(), g1);
    assert!(!a.delete_resource("no/such/thing").unwrap());
    assert!(a.generations().unwrap().resources > g1.resources);
}

#[test]
fn failed_write_leaves_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    let s = SqliteStore::open(&db, kek(6)).unwrap();
    let before = s.put_resource("a/b/c", b"v1", 1).unwrap();
    // Inject a failure into every update of that row from another connection.
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch("CREATE TRIGGER fail_update BEFORE UPDATE ON resources BEGIN SELECT RAISE(ABORT, 'injected'); END;")
        .unwrap();
    let err = s.put_resource("a/b/c", b"v2", 2).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    let r = s.get_resource("a/b/c").unwrap().unwrap();
    assert_eq!(r.data, b"v1");
    assert_eq!(r.meta, before, "version and metadata unchanged");
}

#[test]
fn collateral_cache_overwrites_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    {
        let s = SqliteStore::open(&db, kek(7)).unwrap();
        assert_eq!(s.get_collateral("snp.vcek", "a").unwrap(), None);
        s.put_collateral("snp.vcek", "a", b"one", 10).unwrap();
        s.put_collateral("snp.vcek", "a", b"two", 20).unwrap();
        s.put_collateral("snp.vcek", "b", b"three", 30).unwrap();
        s.put_collateral("other", "a", b"x", 40).unwrap();
    }
    let s = SqliteStore::open(&db, kek(7)).unwrap();
    let c = s.get_collateral("snp.vcek", "a").unwrap().unwrap();
    assert_eq!((c.body.as_slice(), c.fetched_at), (&b"two"[..], 20));
    assert_eq!(
        s.list_collateral("snp.vcek")
            .unwrap()
            .into_iter()
            .map(|c| (c.key, c.fetched_at))
            .collect::<Vec<_>>(),
        vec![("a".to_string(), 20), ("b".to_string(), 30)]
    );
}

#[test]
fn a_nonce_is_consumed_once_across_handles_and_swept_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    let a = SqliteStore::open(&db, kek(6)).unwrap();
    let b = SqliteStore::open(&db, kek(6)).unwrap();
    let g = a.generations().unwrap();
    assert!(a.consume_nonce("n1", 100).unwrap());
    assert!(!a.consume_nonce("n1", 100).unwrap());
    assert!(!b.consume_nonce("n1", 100).unwrap(), "other handle");
    assert!(b.consume_nonce("n2", 200).unwrap());
    // Recording a nonce is not a change any cache depends on.
    assert_eq!(a.generations().unwrap(), g);
    assert_eq!(a.sweep_nonces(99).unwrap(), 0);
    assert_eq!(a.sweep_nonces(100).unwrap(), 1);
    assert!(!b.consume_nonce("n2", 200).unwrap(), "n2 not yet expired");
    assert_eq!(b.sweep_nonces(1000).unwrap(), 1);
    drop((a, b));
    // Durable: a reopened store still knows what was not swept.
    let c = SqliteStore::open(&db, kek(6)).unwrap();
    assert!(c.consume_nonce("n3", 300).unwrap());
    drop(c);
    let c = SqliteStore::open(&db, kek(6)).unwrap();
    assert!(!c.consume_nonce("n3", 300).unwrap());
}

#[test]
fn changes_are_recorded_in_the_audit_log_with_them_and_no_ops_are_not() {
    use ward_store::{AuditEvent, Change};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ward.db");
    let s = SqliteStore::open(&db, kek(1)).unwrap();
    let ev = AuditEvent::new("admin").with("caller", "t");
    let put = |data: &'static [u8]| Change::PutResource {
        path: "a/b/c",
        data,
    };
    s.apply(put(b"one"), 5, Some(&ev)).unwrap();
    s.apply(put(b"two"), 6, Some(&ev)).unwrap();
    // Nothing to delete, a replayed nonce: no change, no record.
    let gone = Change::DeleteResource { path: "x/y/z" };
    assert!(!s.apply(gone, 7, Some(&ev)).unwrap().done());
    let nonce = Change::ConsumeNonce {
        nonce: "n",
        expires_at: 99,
    };
    assert!(s.apply(nonce, 7, Some(&ev)).unwrap().done());
    assert!(!s.apply(nonce, 8, Some(&ev)).unwrap().done());
    // Unaudited changes (tests, tools) record nothing.
    s.put_resource("d/e/f", b"x", 9).unwrap();
    assert_eq!(s.audit_size().unwrap(), 3);
    let entries = s.audit_entries(0, 100).unwrap();
    let leaf = |i: usize| serde_json::from_slice::<serde_json::Value>(&entries[i].leaf).unwrap();
    let (first, second) = (leaf(0), leaf(1));
    assert_eq!(first["time"], 5);
    assert!(first["old_digest"].is_null());
    // The second put names the first's content as the old one, and the
    // same content gets the same keyed digest; neither is the content.
    assert_eq!(second["old_digest"], first["new_digest"]);
    assert_ne!(second["new_digest"], first["new_digest"]);
    assert_eq!(
        second["new_digest"],
        json!(kek(1).keyed_digest("resource", b"two"))
    );
    assert_ne!(
        kek(1).keyed_digest("resource", b"two"),
        kek(2).keyed_digest("resource", b"two")
    );
    assert_eq!(leaf(2)["kind"], "admin");
    // Stored hashes are the RFC 9162 leaf hashes, and a gap is an error
    // naming the entry.
    let hashes = s.audit_hashes(0, 3).unwrap();
    for (e, h) in entries.iter().zip(&hashes) {
        assert_eq!(*h, ward_store::audit::leaf_hash(&e.leaf));
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM audit_log WHERE idx = 1", [])
        .unwrap();
    let e = s.audit_hashes(0, 3).unwrap_err().to_string();
    assert!(e.contains("entry 1 is missing"), "{e}");
}

#[test]
fn with_the_audit_log_off_changes_are_made_and_nothing_is_recorded() {
    use std::sync::Arc;
    use ward_store::{AuditEvent, Change, WithoutAudit};
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), kek(1)).unwrap());
    let s = WithoutAudit(inner.clone());
    let ev = AuditEvent::new("admin");
    let put = Change::PutResource {
        path: "a/b/c",
        data: b"v",
    };
    assert!(s.apply(put, 1, Some(&ev)).unwrap().done());
    s.append_audit(&[ev.clone(), ev], 2).unwrap();
    assert_eq!(inner.get_resource("a/b/c").unwrap().unwrap().data, b"v");
    assert_eq!(inner.audit_size().unwrap(), 0);
}

#[test]
fn concurrent_attestations_and_releases_are_committed_in_groups_without_gaps() {
    use std::sync::Arc;
    use ward_store::{AuditEvent, Change};
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open(&dir.path().join("db"), kek(1)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for n in 0..50 {
                    let nonce = format!("{t}-{n}");
                    let ev = AuditEvent::new("attestation").with("n", nonce.as_str());
                    let change = Change::ConsumeNonce {
                        nonce: &nonce,
                        expires_at: 100,
                    };
                    assert!(s.apply(change, 1, Some(&ev)).unwrap().done());
                    // A replay in the same or a later group is refused.
                    assert!(!s.apply(change, 1, Some(&ev)).unwrap().done());
                    s.append_audit(&[AuditEvent::new("release").with("n", nonce.as_str())], 2)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let entries = s.audit_entries(0, 10_000).unwrap();
    assert_eq!(entries.len(), 800);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
    }
    // Each attestation precedes its release.
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
        let v: serde_json::Value = serde_json::from_slice(&e.leaf).unwrap();
        let n = v["n"].as_str().unwrap().to_string();
        if v["kind"] == "attestation" {
            assert!(seen.insert(n));
        } else {
            assert!(seen.contains(&n), "release of {n} before its attestation");
        }
    }
}
