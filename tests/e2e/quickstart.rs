//! The quick start's policy suite as one chain: the `[[plugins]]` of
//! `examples/poczta.toml`, exactly as written there (paths made absolute),
//! loaded together by the real server and run over the sample messages of
//! `examples/messages/`. Each plugin has its own tests; this one shows the
//! shipped configuration works as a whole: ham passes, a virus and spam do
//! not, and every plugin file and asset the config names exists.

use std::path::{Path, PathBuf};

use crate::harness::{Server, pop3_fetch_all, send_raw_message};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[[plugins]]` part of the quick-start config, with its relative
/// paths (`../plugins/…`) made absolute.
fn quickstart_plugins() -> String {
    let text = std::fs::read_to_string(repo().join("examples/poczta.toml")).unwrap();
    let start = text.find("[[plugins]]").expect("the quick start loads plugins");
    let plugins = repo().join("plugins");
    text[start..].replace("\"../plugins/", &format!("\"{}/", plugins.display()))
}

fn sample(name: &str) -> Vec<u8> {
    let raw = std::fs::read(repo().join("examples/messages").join(name)).unwrap();
    // The samples are stored with LF or CRLF; SMTP wants CRLF.
    let text = String::from_utf8_lossy(&raw)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    text.into_bytes()
}

#[test]
fn every_plugin_and_asset_of_the_quick_start_exists() {
    let config = poczta::Config::load(&repo().join("examples/poczta.toml")).unwrap();
    let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "dnsbl",
        "greylist",
        "forward",
        "antivirus",
        "spam-rules",
        "uribl",
        "bulk-limit",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for p in &config.plugins {
        assert!(
            p.path.exists(),
            "{}: {} (run plugins/build)",
            p.name,
            p.path.display()
        );
        for (name, asset) in &p.assets {
            assert!(asset.exists(), "{}: asset {name}: {}", p.name, asset.display());
        }
    }
    // The embedded default names the same plugins (optional there).
    let default = poczta::Config::embedded_default();
    let default_names: Vec<&str> = default.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(default_names, names);
}

#[test]
fn the_quick_start_suite_passes_ham_and_stops_viruses_and_spam() {
    let s = Server::start_with(&quickstart_plugins());
    let ham = send_raw_message(
        s.smtp,
        "marek@example.org",
        &["alice@example.test"],
        &sample("ham-1.eml"),
    );
    assert!(ham.starts_with("250"), "ham: {ham}\n{}", s.log());
    let virus = send_raw_message(
        s.smtp,
        "x@example.org",
        &["alice@example.test"],
        &sample("eicar-zip.eml"),
    );
    assert!(virus.starts_with("554 5.7.1"), "EICAR in a zip: {virus}");
    let spam = send_raw_message(
        s.smtp,
        "x@example.org",
        &["alice@example.test"],
        &sample("spam-1.eml"),
    );
    assert!(spam.starts_with("550 5.7.1"), "spam: {spam}");
    let inbox = pop3_fetch_all(s.pop3, "alice@example.test", "secret", false);
    assert_eq!(inbox.len(), 1, "only the ham arrives");
    let text = String::from_utf8_lossy(&inbox[0]);
    assert!(text.contains("Notes from Monday's planning meeting"), "{text}");
    let log = s.log();
    for plugin in ["antivirus", "spam-rules"] {
        assert!(log.contains(plugin), "{plugin} ran: {log}");
    }
}
