//! PostgresStore against a real PostgreSQL server (Debian's package, started
//! by the test in a temporary directory; skipped with a notice when it is
//! not installed): the same behaviour as the SQLite store, plus what several
//! replicas on one database need: one schema when they migrate at once,
//! consecutive audit indexes under concurrent writers, changes announced at
//! once, and calls that fail fast and recover when the server goes away.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use ward_store::testing::PgCluster;
use ward_store::{
    AuditEvent, Change, ChangeFeed, Kek, PgOptions, PolicyKind, PostgresStore, ReferenceValue,
    Store, StoreError,
};

fn kek(b: u8) -> Kek {
    Kek::from_bytes([b; 32])
}

/// One server for the tests of this file that do not stop it.
fn shared() -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| PgCluster::start("postgres store tests"))
        .as_ref()
}

fn open(url: &str, k: u8) -> PostgresStore {
    PostgresStore::open(&PgOptions::new(url), kek(k)).unwrap()
}

fn rv(name: &str) -> ReferenceValue {
    ReferenceValue {
        name: name.into(),
        single: false,
        values: vec![json!("1")],
        expires_at: None,
        version: 0,
        updated_at: 0,
    }
}

/// Poll `f` until it holds or `limit` passes.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn stores_reads_and_persists_everything_across_reopen() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    {
        let s = open(&url, 1);
        let m1 = s
            .put_resource("default/test/key", b"secret-bytes", 10)
            .unwrap();
        let m2 = s
            .put_resource("default/test/key", b"secret-bytes-2", 11)
            .unwrap();
        assert!(m2.version > m1.version);
        s.put_policy(PolicyKind::Resource, "default", "package policy", 1)
            .unwrap();
        s.put_reference_value(&rv("svn"), 1).unwrap();
        let mut one = rv("single");
        one.single = true;
        s.put_reference_value(&one, 1).unwrap();
        assert!(s.add_key("cookie", "k1", b"material", 5).unwrap());
        assert!(s.add_key("cookie", "k0", b"second", 6).unwrap());
        assert!(
            !s.add_key("cookie", "k1", b"other", 7).unwrap(),
            "existing key kept"
        );
        s.put_collateral("snp.vcek", "a", b"one", 10).unwrap();
        s.put_collateral("snp.vcek", "a", b"two", 20).unwrap();
    }
    let s = open(&url, 1);
    let r = s.get_resource("default/test/key").unwrap().unwrap();
    assert_eq!(r.data, b"secret-bytes-2");
    assert_eq!(r.meta.size, 14);
    assert_eq!(
        s.resource_meta("default/test/key").unwrap(),
        Some(r.meta.clone())
    );
    assert_eq!(s.list_resources().unwrap(), vec![r.meta]);
    let p = s
        .get_policy(PolicyKind::Resource, "default")
        .unwrap()
        .unwrap();
    assert_eq!(p.text, "package policy");
    assert_eq!(
        s.policy_version(PolicyKind::Resource, "default").unwrap(),
        Some(p.version)
    );
    assert!(s.list_policies(PolicyKind::Attestation).unwrap().is_empty());
    assert_eq!(
        s.get_reference_value("svn").unwrap().unwrap().values,
        vec![json!("1")]
    );
    assert!(s.get_reference_value("single").unwrap().unwrap().single);
    assert_eq!(s.list_reference_values().unwrap().len(), 2);
    // Insertion order, not id order.
    let keys = s.keys("cookie").unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.id.as_str(), k.material.as_slice()))
            .collect::<Vec<_>>(),
        vec![("k1", &b"material"[..]), ("k0", &b"second"[..])]
    );
    assert!(s.remove_key("cookie", "k1").unwrap());
    assert!(!s.remove_key("cookie", "k1").unwrap());
    let c = s.get_collateral("snp.vcek", "a").unwrap().unwrap();
    assert_eq!((c.body.as_slice(), c.fetched_at), (&b"two"[..], 20));
    assert_eq!(s.list_collateral("snp.vcek").unwrap().len(), 1);
    assert!(s.delete_resource("default/test/key").unwrap());
    assert!(!s.delete_resource("default/test/key").unwrap());
    assert!(s.get_resource("default/test/key").unwrap().is_none());
    s.check_writable(1).unwrap();
}

#[test]
fn a_database_dump_reveals_no_secret_and_a_wrong_kek_is_refused() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let s = open(&url, 2);
    let marker = b"PLAINTEXT-MARKER-0123456789";
    s.put_resource("a/b/c", marker, 1).unwrap();
    s.add_key("ring", "id", marker, 1).unwrap();
    s.apply(
        Change::PutResource {
            path: "a/b/d",
            data: marker,
        },
        2,
        Some(&AuditEvent::new("admin")),
    )
    .unwrap();
    drop(s);
    let dump = pg.dump(PgCluster::db_of(&url));
    assert!(dump.len() > 1000, "a real dump");
    assert!(!dump.windows(marker.len()).any(|w| w == marker));
    let err = PostgresStore::open(&PgOptions::new(&url), kek(3)).unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
}

#[test]
fn replicas_migrating_an_empty_database_at_once_make_one_schema() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&PgOptions::new(&url), kek(4)).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let db = PgCluster::db_of(&url);
    assert_eq!(pg.psql(db, "SELECT version FROM ward_schema"), "5");
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "12"
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM meta"), "1");
}

#[test]
fn another_replicas_change_is_announced_at_once() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let a = open(&url, 5);
    let b = open(&url, 5);
    assert!(within(Duration::from_secs(5), || a.change_feed()
        == ChangeFeed::Notified));
    let g0 = a.generations().unwrap();
    // Read again: answered from memory while nothing changed.
    assert_eq!(a.generations().unwrap(), g0);
    b.put_resource("r/t/k", b"x", 1).unwrap();
    assert!(
        within(Duration::from_secs(1), || a
            .generations()
            .unwrap()
            .resources
            > g0.resources),
        "a change on b is seen on a within 1 s"
    );
    b.add_key("cookie", "new", b"k", 1).unwrap();
    assert!(within(Duration::from_secs(1), || a
        .generations()
        .unwrap()
        .keys
        > g0.keys));
    // Local writes are seen at once.
    a.put_policy(PolicyKind::Resource, "p", "x", 1).unwrap();
    assert!(a.generations().unwrap().policies > g0.policies);
}

#[test]
fn nonces_are_consumed_once_across_replicas_and_swept() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let a = open(&url, 6);
    let b = open(&url, 6);
    assert!(a.consume_nonce("n1", 100).unwrap());
    assert!(!a.consume_nonce("n1", 100).unwrap());
    assert!(!b.consume_nonce("n1", 100).unwrap(), "other replica");
    assert!(b.consume_nonce("n2", 200).unwrap());
    assert_eq!(a.sweep_nonces(99).unwrap(), 0);
    assert_eq!(a.sweep_nonces(100).unwrap(), 1);
    assert!(!b.consume_nonce("n2", 200).unwrap());
}

#[test]
fn audited_changes_from_concurrent_replicas_get_consecutive_indexes() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let stores: Vec<_> = (0..3).map(|_| Arc::new(open(&url, 7))).collect();
    let threads: Vec<_> = stores
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            (0..2).map(move |t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for n in 0..20 {
                        let ev = AuditEvent::new("admin").with("who", format!("{i}/{t}/{n}"));
                        let path = format!("r/{i}/{t}-{n}");
                        if n % 2 == 0 {
                            s.apply(
                                Change::PutResource {
                                    path: &path,
                                    data: b"v",
                                },
                                n,
                                Some(&ev),
                            )
                            .unwrap();
                        } else {
                            s.append_audit(&[ev.clone(), ev], n).unwrap();
                        }
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = &stores[0];
    // 6 writers × (10 changes + 10 appends of 2).
    assert_eq!(s.audit_size().unwrap(), 180);
    let entries = s.audit_entries(0, 1000).unwrap();
    assert_eq!(entries.len(), 180);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(e.hash, ward_store::audit::leaf_hash(&e.leaf));
    }
    assert_eq!(s.audit_hashes(0, 180).unwrap().len(), 180);
    pg.psql(
        PgCluster::db_of(&url),
        "DELETE FROM audit_log WHERE idx = 17",
    );
    let e = s.audit_hashes(0, 180).unwrap_err().to_string();
    assert!(e.contains("entry 17 is missing"), "{e}");
}

#[test]
fn audit_records_complete_changes_and_no_ops_record_nothing() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let s = open(&url, 1);
    let ev = AuditEvent::new("admin").with("caller", "t");
    let put = |data: &'static [u8]| Change::PutResource {
        path: "a/b/c",
        data,
    };
    s.apply(put(b"one"), 5, Some(&ev)).unwrap();
    s.apply(put(b"two"), 6, Some(&ev)).unwrap();
    assert!(!s
        .apply(Change::DeleteResource { path: "x/y/z" }, 7, Some(&ev))
        .unwrap()
        .done());
    let nonce = Change::ConsumeNonce {
        nonce: "n",
        expires_at: 99,
    };
    assert!(s.apply(nonce, 7, Some(&ev)).unwrap().done());
    assert!(!s.apply(nonce, 8, Some(&ev)).unwrap().done());
    s.apply(
        Change::PutPolicy {
            kind: PolicyKind::Resource,
            id: "default",
            text: "package p",
        },
        9,
        Some(&ev),
    )
    .unwrap();
    s.put_resource("d/e/f", b"x", 9).unwrap();
    let entries = s.audit_entries(0, 100).unwrap();
    assert_eq!(entries.len(), 4);
    let leaf = |i: usize| serde_json::from_slice::<serde_json::Value>(&entries[i].leaf).unwrap();
    assert_eq!(leaf(0)["time"], 5);
    assert!(leaf(0)["old_digest"].is_null());
    assert_eq!(leaf(1)["old_digest"], leaf(0)["new_digest"]);
    assert_eq!(
        leaf(1)["new_digest"],
        json!(kek(1).keyed_digest("resource", b"two"))
    );
    assert_eq!(
        leaf(3)["new_sha256"],
        json!(ward_store::audit::sha256_hex(b"package p"))
    );
}

#[test]
fn a_failed_write_leaves_data_intact() {
    let Some(pg) = shared() else { return };
    let url = pg.new_database();
    let s = open(&url, 8);
    let before = s.put_resource("a/b/c", b"v1", 1).unwrap();
    let g = s.generations().unwrap();
    pg.psql(
        PgCluster::db_of(&url),
        "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;
         CREATE TRIGGER fail_update BEFORE UPDATE ON resources FOR EACH ROW EXECUTE FUNCTION fail();",
    );
    let ev = AuditEvent::new("admin");
    let err = s
        .apply(
            Change::PutResource {
                path: "a/b/c",
                data: b"v2",
            },
            2,
            Some(&ev),
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Database(ref m) if m.contains("injected")),
        "{err}"
    );
    let r = s.get_resource("a/b/c").unwrap().unwrap();
    assert_eq!((r.data.as_slice(), &r.meta), (&b"v1"[..], &before));
    assert_eq!(
        s.generations().unwrap(),
        g,
        "the counter bump was rolled back"
    );
    assert_eq!(s.audit_size().unwrap(), 0, "and so was the record");
}

#[test]
fn calls_fail_fast_while_the_server_is_down_and_recover_without_reopening() {
    let Some(pg) = PgCluster::start("postgres outage test") else {
        return;
    };
    let url = pg.new_database();
    let s = open(&url, 9);
    s.put_resource("a/b/c", b"v1", 1).unwrap();
    pg.stop();
    let start = Instant::now();
    let err = s.get_resource("a/b/c").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    // While down, calls are refused at once rather than each waiting.
    for _ in 0..50 {
        let err = s.check_writable(2).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
    assert!(
        start.elapsed() < PgOptions::new("").op_timeout,
        "no call waited for the deadline"
    );
    assert!(within(Duration::from_secs(5), || s.change_feed()
        == ChangeFeed::Polling));
    pg.start_server();
    assert!(
        within(Duration::from_secs(10), || s.check_writable(3).is_ok()),
        "the store recovers by itself"
    );
    assert_eq!(s.get_resource("a/b/c").unwrap().unwrap().data, b"v1");
    s.put_resource("a/b/c", b"v2", 4).unwrap();
    assert!(within(Duration::from_secs(5), || s.change_feed()
        == ChangeFeed::Notified));
}

#[test]
fn connects_over_tls_verifying_the_server_against_the_given_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let Some(pg) = PgCluster::start_tls("postgres TLS test", &cert_pem, &key_pem) else {
        return;
    };
    let url = pg
        .new_database()
        .replace("sslmode=disable", "sslmode=require");
    let ca = pg.dir().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let opts = PgOptions {
        ca_file: Some(ca),
        ..PgOptions::new(&url)
    };
    let s = PostgresStore::open(&opts, kek(10)).unwrap();
    s.put_resource("a/b/c", b"over tls", 1).unwrap();
    // Every connection of this store is encrypted.
    let db = PgCluster::db_of(&url);
    let plain = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = '{db}' AND a.application_name = 'ward' AND NOT s.ssl"
        ),
    );
    let encrypted = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = '{db}' AND a.application_name = 'ward' AND s.ssl"
        ),
    );
    assert_eq!(plain, "0");
    assert_ne!(encrypted, "0");
    // A server the system's roots do not vouch for is refused.
    let err = PostgresStore::open(&PgOptions::new(&url), kek(10)).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.to_lowercase().contains("certificate")),
        "{err}"
    );
}
