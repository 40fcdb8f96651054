//! The fuzz targets' saved inputs, run as ordinary tests (no fuzz build, no nightly flags):
//! every genuine delivery in `fuzz/seeds/<target>/` must still be accepted, and every input in
//! `fuzz/regressions/<target>/` (a crash the fuzzer once found, kept after the fix) must be
//! answered without a panic: accepted, or refused with a reason.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use webhook_formats::fuzzing;

type Target = fn(&[u8]) -> Result<(), String>;

const TARGETS: [(&str, Target); 3] = [
    ("partner_center_event", fuzzing::partner_center_event),
    ("dataverse_context", fuzzing::dataverse_context),
    ("signature", fuzzing::signature),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted (an absent directory has none).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_none_or(|n| n != ".gitkeep"));
    files.sort();
    files
}

#[test]
fn genuine_seed_deliveries_are_accepted() {
    for (name, target) in TARGETS {
        let files = inputs(&fuzz_dir().join("seeds").join(name));
        assert!(
            !files.is_empty(),
            "fuzz/seeds/{name} has genuine deliveries"
        );
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = target(&data);
            assert!(outcome.is_ok(), "{}: refused: {outcome:?}", file.display());
            // The same delivery with its last byte changed is refused: the target checks
            // something (for the signature target, the body no longer matches).
            if name == "signature" {
                let mut tampered = data.clone();
                *tampered.last_mut().unwrap() ^= 1;
                assert!(
                    target(&tampered).is_err(),
                    "{}: a changed body passed",
                    file.display()
                );
            }
        }
        println!("{name}: {} seed deliveries accepted", files.len());
    }
}

#[test]
fn saved_crash_inputs_are_answered_without_a_panic() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let files = inputs(&fuzz_dir().join("regressions").join(name));
        let (mut accepted, mut refused) = (0, 0);
        for file in &files {
            let data = std::fs::read(file).unwrap();
            match catch_unwind(AssertUnwindSafe(|| target(&data))) {
                Ok(Ok(())) => accepted += 1,
                Ok(Err(_reason)) => refused += 1,
                Err(_) => failures.push(file.display().to_string()),
            }
        }
        println!(
            "{name}: {} saved crash inputs: {accepted} accepted, {refused} refused with a reason, {} panicked",
            files.len(),
            files.len() - accepted - refused
        );
    }
    assert!(
        failures.is_empty(),
        "these inputs still panic: {failures:#?}"
    );
}
