//! The TOML file as written: serde structs that mirror the keys of
//! CONTRACT.md exactly. Every table denies unknown fields, so a typo is an
//! error that names the key instead of a setting silently ignored.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub smtp: Option<RawListener>,
    #[serde(default)]
    pub submission: Option<RawSubmission>,
    #[serde(default)]
    pub submissions: Option<RawListener>,
    #[serde(default)]
    pub pop3: Option<RawPop3>,
    #[serde(default)]
    pub pop3s: Option<RawListener>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub plugins: Vec<RawPlugin>,
    #[serde(default)]
    pub scores: RawScores,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub relay: RawRelay,
    #[serde(default)]
    pub queue: RawQueue,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub domain: String,
    pub next_hop: String,
    pub tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    pub verify_recipients: Option<bool>,
    pub verify_cache: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub retry_first: Option<DurationValue>,
    pub retry_max: Option<DurationValue>,
    pub max_age: Option<DurationValue>,
    pub mx_port: Option<u16>,
    pub tls: Option<String>,
    pub tls_verify: Option<bool>,
    pub concurrency: Option<u64>,
    pub connect_timeout: Option<DurationValue>,
    pub command_timeout: Option<DurationValue>,
    pub poll_interval: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub name: String,
    pub path: String,
    pub on_error: Option<String>,
    #[serde(default)]
    pub grants: Vec<String>,
    pub config: Option<toml::Table>,
    #[serde(default)]
    pub assets: toml::Table,
    pub timeout: Option<DurationValue>,
    pub memory: Option<SizeValue>,
    pub fuel: Option<u64>,
    pub reuse: Option<u32>,
    pub optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScores {
    pub add_header: Option<f64>,
    pub junk: Option<f64>,
    pub reject: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    pub timeout: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub hostname: String,
    pub data_dir: String,
    pub domains: Vec<String>,
    pub shutdown_timeout: Option<DurationValue>,
    pub plugin_cache_dir: Option<String>,
    pub store_cache: Option<SizeValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    #[serde(default)]
    pub listen: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubmission {
    #[serde(default)]
    pub listen: Vec<String>,
    pub auth_without_tls: Option<bool>,
    #[serde(default)]
    pub senders: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPop3 {
    #[serde(default)]
    pub listen: Vec<String>,
    pub allow_plaintext: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_line_length: Option<u64>,
    pub max_message_size: Option<SizeValue>,
    pub max_recipients: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub max_errors: Option<u64>,
    pub command_timeout: Option<DurationValue>,
    pub data_timeout: Option<DurationValue>,
    pub pop3_timeout: Option<DurationValue>,
    pub login_failure_delay: Option<DurationValue>,
}

/// A duration written as whole seconds (`300`) or with a unit (`"5m"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Seconds(u64),
    Text(String),
}

/// A size written as bytes (`26214400`) or with a unit (`"25MiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(u64),
    Text(String),
}
