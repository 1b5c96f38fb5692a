//! dm-verity hashing throughput against plain SHA-256 on the same machine:
//! `cargo bench -p ward-oci --bench verity`. Prints MB/s for SHA-256 of a
//! buffer on one core, the verity root over the same bytes on one core,
//! and the verity root of one buffer per core on every core at once, with
//! the ratios the policy generator's target is stated in.

use std::time::Instant;

use ward_oci::testing::noise as data;
use ward_oci::verity::VerityHasher;

const MIB: usize = 1 << 20;

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let len = 256 * MIB;
    let buf = data(1, len);
    let mb = len as f64 / 1e6;
    let sha = best_of(5, || {
        std::hint::black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &buf));
    });
    let verity = best_of(5, || {
        let mut h = VerityHasher::new();
        for c in buf.chunks(64 * 1024) {
            h.update(c);
        }
        std::hint::black_box(h.finish());
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bufs: Vec<Vec<u8>> = (0..cores).map(|i| data(i as u64 + 2, len)).collect();
    let parallel = best_of(3, || {
        std::thread::scope(|s| {
            for b in &bufs {
                s.spawn(move || {
                    let mut h = VerityHasher::new();
                    for c in b.chunks(64 * 1024) {
                        h.update(c);
                    }
                    std::hint::black_box(h.finish());
                });
            }
        });
    });
    let (sha_rate, v_rate, p_rate) = (mb / sha, mb / verity, cores as f64 * mb / parallel);
    println!("SHA-256, one core: {sha_rate:.0} MB/s");
    println!(
        "dm-verity root, one core: {v_rate:.0} MB/s ({:.2} of SHA-256)",
        v_rate / sha_rate
    );
    println!(
        "dm-verity root, {cores} cores: {p_rate:.0} MB/s ({:.2} of SHA-256 per core)",
        p_rate / sha_rate / cores as f64
    );
}
