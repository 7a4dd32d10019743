//! One message through a plugin, as a transaction runs it: a new plugin
//! session, `mail_from` (starts the transaction), then `data` (parse once,
//! a fresh instance of the plugin, one `headers` call, thresholds, header
//! edits). The message has 20 header fields and a one-line body.
//!
//! `cargo bench -p poczta --bench plugin_hook`
//!
//! * `plugin_hook/rust_tag_score`: `plugins/dist/tag-score.wasm`.
//! * `plugin_hook_interpreted/{python_subject_tag,js_header_tag}`:
//!   `py-subject-tag.wasm` (componentize-py) and `js-header-tag.wasm`
//!   (componentize-js), with fewer samples: each instance starts an
//!   interpreter.
//! * `…_reused`: the same with `reuse` set, so each transaction takes an
//!   instance that served the previous one from the plugin's idle pool.
//!
//! The plugins come from `plugins/build`; a missing file skips its
//! benchmark only. Compiled components are cached in
//! `$CARGO_TARGET_TMPDIR/poczta-bench-plugin-cache`, so only the first run
//! pays for compiling the Python and JavaScript plugins. The per-hook
//! deadline is raised to 5 s so that a slow iteration on a busy machine is
//! measured rather than turned into a tempfail.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use poczta::plugin::{
    ConnInfo, Decision, Envelope, MemoryKv, PluginConfig, PluginSet, Runtime, ScoreThresholds, Services,
};

fn dist(file: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} not built; build it with `plugins/build` (from the repository root)",
            path.display()
        );
        None
    }
}

fn services() -> Services {
    // Nothing listens on port 9 of loopback; none of these plugins has the
    // dns grant anyway.
    let dns = poczta::dns::Resolver::new(&poczta::dns::ResolverConfig {
        nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        timeout: Duration::from_millis(300),
        cache_size: 16,
    })
    .expect("resolver");
    Services {
        kv: Arc::new(MemoryKv::new()),
        dns: Arc::new(dns),
    }
}

fn conn() -> ConnInfo {
    ConnInfo {
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        client_port: 40000,
        listener: "smtp".into(),
        tls: false,
        authenticated: None,
        helo: "mail-gw01.client.example.net".into(),
    }
}

fn envelope() -> Envelope {
    Envelope {
        mail_from: "jan.nowak@example.net".into(),
        rcpts: vec!["alice.kowalska@example.test".into()],
    }
}

/// 20 header fields (the Subject matches the Python plugin's word) and a
/// one-line body.
fn message() -> Arc<Vec<u8>> {
    let mut raw = String::new();
    for i in 0..18 {
        let _ = write!(raw, "X-Header-{i}: value number {i} of the test message\r\n");
    }
    raw.push_str("Subject: hello python\r\nFrom: jan.nowak@example.net\r\n\r\nbody\r\n");
    Arc::new(raw.into_bytes())
}

struct Bench {
    set: Arc<PluginSet>,
    raw: Arc<Vec<u8>>,
    env: Envelope,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn new(runtime: &Runtime, name: &str, path: &Path, config_json: &str, reuse: u32) -> Bench {
        let mut cfg = PluginConfig::new(name, path);
        cfg.config_json = config_json.into();
        cfg.reuse = reuse;
        cfg.timeout = Duration::from_secs(5);
        let set = PluginSet::load(runtime, &[cfg], ScoreThresholds::default(), services())
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Bench {
            set: Arc::new(set),
            raw: message(),
            env: envelope(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    /// One transaction's plugin work; returns the outcome's decision and
    /// the number of headers to add.
    fn run(&self) -> (Decision, usize) {
        self.rt.block_on(async {
            let mut s = self.set.session(conn());
            s.mail_from(&self.env).await;
            let out = s.data(&self.env, Arc::clone(&self.raw)).await;
            (out.decision, out.add_headers.len())
        })
    }

    fn bench(&self, group: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
        // Sanity: the plugin ran and added its header (plus the summary).
        let (decision, added) = self.run();
        assert_eq!(decision, Decision::Continue, "{id}");
        assert!(added >= 2, "{id}: {added} headers added");
        group.bench_function(id, |b| b.iter(|| self.run()));
    }
}

fn runtime() -> Runtime {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("poczta-bench-plugin-cache");
    Runtime::new(Some(cache)).expect("plugin runtime")
}

fn bench_rust(c: &mut Criterion) {
    let Some(path) = dist("tag-score.wasm") else {
        return;
    };
    let runtime = runtime();
    let mut group = c.benchmark_group("plugin_hook");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    Bench::new(&runtime, "tag", &path, "{}", 1).bench(&mut group, "rust_tag_score");
    Bench::new(&runtime, "tag", &path, "{}", u32::MAX).bench(&mut group, "rust_tag_score_reused");
    group.finish();
}

fn bench_interpreted(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("plugin_hook_interpreted");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (id, file, config) in [
        (
            "python_subject_tag",
            "py-subject-tag.wasm",
            r#"{"word": "python"}"#,
        ),
        ("js_header_tag", "js-header-tag.wasm", "{}"),
    ] {
        let Some(path) = dist(file) else { continue };
        Bench::new(&runtime, id, &path, config, 1).bench(&mut group, id);
        Bench::new(&runtime, id, &path, config, u32::MAX).bench(&mut group, &format!("{id}_reused"));
    }
    group.finish();
}

criterion_group!(benches, bench_rust, bench_interpreted);
criterion_main!(benches);
