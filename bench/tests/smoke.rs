//! The benchmark in CI: `scripts/bench --smoke` and `--reload --smoke`
//! against the real server, checking that the tool and the server work
//! (every message accepted, POP3 retrieves them, reloads happen under load),
//! never how fast. The script exits 1 when a count falls short.
//!
//! Needs the `poczta` binary beside this one, which a workspace test build
//! (`cargo test --workspace`, what scripts/test runs) produces; a lone
//! `cargo test -p poczta-bench` skips with a message instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_poczta-bench"))
        .parent()?
        .to_path_buf();
    if dir.join("poczta").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no poczta binary in {} (run the workspace's tests: scripts/test)",
            dir.display()
        );
        None
    }
}

fn run_bench(args: &[&str]) -> String {
    let Some(dir) = bin_dir() else {
        return String::new();
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/bench"))
        .args(args)
        .env("BIN_DIR", &dir)
        .output()
        .expect("run scripts/bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scripts/bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The rows of the table whose first cell is `label`.
fn rows<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.trim_start_matches("| ").starts_with(label))
        .collect()
}

// One test: both runs use the script's fixed ports, so they must not overlap.
#[test]
fn bench_smoke_runs_against_the_real_server() {
    let table = run_bench(&["--smoke"]);
    if table.is_empty() {
        return;
    }
    // Two SMTP rows and the POP3 row, each with 0 failed.
    let none = rows(&table, "none |");
    assert_eq!(none.len(), 3, "{table}");
    assert!(none.iter().any(|r| r.contains("POP3 RETR")), "{table}");
    for r in &none {
        let failed = r.split('|').nth(7).map(str::trim);
        assert_eq!(failed, Some("0"), "{r}");
    }

    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    if !plugins.join("tag-score.wasm").is_file() || !plugins.join("kv-counter.wasm").is_file() {
        eprintln!("skipped the reload run: build the plugins first (plugins/build)");
        return;
    }
    let table = run_bench(&["--reload", "--smoke"]);
    let live = rows(&table, "live plugin");
    assert_eq!(live.len(), 1, "{table}");
    assert!(!live[0].contains(" 0 reloads"), "{table}");
}
