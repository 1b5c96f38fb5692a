//! Test support: where the real-hardware fixtures are.

use std::path::PathBuf;

/// The fixtures directory — `$WARD_FIXTURES`, else `../shared/fixtures`
/// beside the repository — if it holds `needed` (a relative path); otherwise
/// prints a SKIPPED notice and returns `None`, so tests skip visibly.
pub fn fixtures(needed: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WARD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures"
            ))
        });
    if dir.join(needed).exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: fixture {needed} not found under {} (set WARD_FIXTURES)",
            dir.display()
        );
        None
    }
}
