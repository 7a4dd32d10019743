//! The `poczta` binary: parses the command line, installs logging, loads
//! the config and calls into the library. Exit codes: 0 success, 2 bad usage
//! or bad config, 1 any other failure.

mod cli;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Parser;
use poczta::Config;
use poczta::store::users;

use cli::{
    Cli, Command, PasswordArgs, PluginCommand, PluginRunArgs, PluginTrainArgs, QueueCommand, UserCommand,
};

/// An error that maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poczta: {e:#}");
            let plugin_config = matches!(
                e.downcast_ref::<poczta::ServerError>(),
                Some(poczta::ServerError::Plugins(_))
            );
            if plugin_config
                || e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<poczta::ConfigError>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Plugin(cmd) = cli.command {
        return plugin(cmd, cli.config);
    }
    let path = match &cli.command {
        Command::Serve { config: Some(p) } => Some(p.clone()),
        _ => cli.config.clone(),
    };
    let config = match &path {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::User(cmd) => user(config, cmd),
        Command::Queue(cmd) => queue(config, cmd),
        Command::Plugin(_) => unreachable!("handled above"),
    }
}

/// `poczta queue …`: through the admin socket of a running server, else
/// on the database.
fn queue(config: Config, cmd: QueueCommand) -> anyhow::Result<()> {
    let (name, id, json_out) = match &cmd {
        QueueCommand::List { json } => ("queue-list", String::new(), *json),
        QueueCommand::Show { id } => ("queue-show", id.clone(), true),
        QueueCommand::Retry { id } => ("queue-retry", id.clone(), false),
        QueueCommand::Delete { id } => ("queue-delete", id.clone(), false),
    };
    let reply = admin_channel(&config)?.call(&serde_json::json!({"cmd": name, "id": id}))?;
    if reply.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        let error = reply
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("failed");
        return Err(UsageError(error.to_owned()).into());
    }
    match cmd {
        QueueCommand::List { .. } if !json_out => {
            let now = poczta::clock::unix_secs();
            let records = reply["queue"].as_array().cloned().unwrap_or_default();
            for r in &records {
                let age = now - r["arrival"].as_i64().unwrap_or(now);
                let sender = r["sender"].as_str().filter(|s| !s.is_empty()).unwrap_or("<>");
                println!(
                    "{}  {:>6}s  from {sender}",
                    r["queue_id"].as_str().unwrap_or("?"),
                    age
                );
                for rc in r["rcpts"].as_array().into_iter().flatten() {
                    println!(
                        "    {:<9} {}  attempts {}  {}",
                        rc["state"].as_str().unwrap_or("?"),
                        rc["address"].as_str().unwrap_or("?"),
                        rc["attempts"].as_u64().unwrap_or(0),
                        rc["last_reply"].as_str().unwrap_or("")
                    );
                }
            }
            eprintln!("{} message(s) queued", records.len());
        }
        QueueCommand::List { .. } => println!("{}", reply["queue"]),
        QueueCommand::Show { .. } => println!("{}", serde_json::to_string_pretty(&reply)?),
        QueueCommand::Retry { id } | QueueCommand::Delete { id } => {
            let found = reply["found"].as_u64().unwrap_or(0);
            if found == 0 && id != "all" {
                return Err(UsageError(format!("{id} is not in the queue")).into());
            }
            eprintln!("{name}: {found} message(s)");
        }
    }
    Ok(())
}

fn plugin(cmd: PluginCommand, config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use poczta::plugin::{self, Runtime};
    let runtime = Runtime::new(None)?;
    match cmd {
        PluginCommand::Check { file } => {
            let report = plugin::runner::check(&runtime, &file)
                .map_err(|e| UsageError(format!("{}: not a usable plugin: {e}", file.display())))?;
            println!("{report}");
        }
        PluginCommand::Run(args) => {
            let report = plugin_run(&runtime, args)?;
            print!("{report}");
        }
        PluginCommand::Train(args) => plugin_train(&runtime, args, config)?,
    }
    Ok(())
}

/// `poczta plugin train`: runs the plugin in training mode over the
/// labelled folders, then commits its kv writes in one transaction.
fn plugin_train(
    runtime: &poczta::plugin::Runtime,
    args: PluginTrainArgs,
    global_config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use poczta::plugin::train::{self, BufferedKv, Label};
    let config = match args.config.or(global_config) {
        Some(path) => Config::load(&path)?,
        None => Config::embedded_default(),
    };
    let plugin = poczta::policy::plugin_configs(&config)
        .into_iter()
        .find(|p| p.name == args.plugin)
        .ok_or_else(|| {
            UsageError(format!(
                "no [[plugins]] entry named {:?} in {}",
                args.plugin, config.origin
            ))
        })?;
    let mut examples = Vec::new();
    for (label, dirs) in [(Label::Spam, &args.spam), (Label::Ham, &args.ham)] {
        for dir in dirs {
            let files = train::eml_files(dir)
                .map_err(|e| UsageError(format!("cannot read {}: {e}", dir.display())))?;
            examples.extend(files.into_iter().map(|f| (label, f)));
        }
    }
    if examples.is_empty() {
        return Err(UsageError("no .eml files given (--spam DIR, --ham DIR)".into()).into());
    }
    // Reads and the final write go to the running server, or to the file.
    let channel = std::sync::Arc::new(std::sync::Mutex::new(admin_channel(&config)?));
    let reader = std::sync::Arc::clone(&channel);
    let kv = BufferedKv::new(Box::new(move |p: &str, k: &str, _now: u64| {
        let request = serde_json::json!({"cmd": "kv-get", "plugin": p, "key": k});
        let reply = reader
            .lock()
            .map_err(|_| "kv reader poisoned".to_string())?
            .call(&request)
            .map_err(|e| e.to_string())?;
        match reply["ok"].as_bool() {
            Some(true) => serde_json::from_value(reply["value"].clone()).map_err(|e| e.to_string()),
            _ => Err(reply["error"].as_str().unwrap_or("kv-get failed").to_owned()),
        }
    }));
    let (dns, rt) = offline_plugin_env()?;
    let backend: std::sync::Arc<dyn poczta::plugin::KvBackend> = kv.clone();
    let report = rt
        .block_on(train::train(runtime, &plugin, examples, backend, dns))
        .map_err(|e| UsageError(format!("{}: {e}", plugin.path.display())))?;
    if !report.failed.is_empty() {
        for (file, cause) in &report.failed {
            eprintln!("poczta: {}: {cause}", file.display());
        }
        return Err(anyhow!(
            "{} message(s) failed; nothing was written",
            report.failed.len()
        ));
    }
    let writes: Vec<serde_json::Value> = kv
        .changes()
        .into_iter()
        .map(|c| match c.value {
            Some((value, expires)) => {
                serde_json::json!({"plugin": c.plugin, "key": c.key, "value": value, "expires": expires})
            }
            None => serde_json::json!({"plugin": c.plugin, "key": c.key, "value": null}),
        })
        .collect();
    let reply = channel
        .lock()
        .map_err(|_| anyhow!("kv channel poisoned"))?
        .call(&serde_json::json!({"cmd": "kv-apply", "writes": writes}))?;
    if reply["ok"].as_bool() != Some(true) {
        return Err(anyhow!(
            "storing the trained counts: {}",
            reply["error"].as_str().unwrap_or("failed")
        ));
    }
    eprintln!(
        "trained {}: {} spam, {} ham; {} key(s) written",
        plugin.name,
        report.spam,
        report.ham,
        writes.len()
    );
    Ok(())
}

/// The resolver and the single-threaded runtime that run a plugin outside
/// the server (`plugin run`, `plugin train`).
fn offline_plugin_env() -> anyhow::Result<(std::sync::Arc<poczta::dns::Resolver>, tokio::runtime::Runtime)> {
    let dns = std::sync::Arc::new(poczta::dns::Resolver::new(
        &poczta::dns::ResolverConfig::default(),
    )?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((dns, rt))
}

fn plugin_run(runtime: &poczta::plugin::Runtime, args: PluginRunArgs) -> anyhow::Result<String> {
    use poczta::plugin::{Grants, MemoryKv, runner};
    let eml = std::fs::read(&args.eml)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", args.eml.display())))?;
    serde_json::from_str::<serde_json::Value>(&args.plugin_config)
        .map_err(|e| UsageError(format!("--config is not JSON: {e}")))?;
    let (dns, rt) = offline_plugin_env()?;
    let report = rt
        .block_on(runner::run(
            runtime,
            &args.file,
            runner::RunOptions {
                eml,
                from: args.from,
                to: args.to,
                ip: args.ip,
                helo: args.helo,
                config_json: args.plugin_config,
                grants: Grants::ALL,
                kv: std::sync::Arc::new(MemoryKv::new()),
                dns,
            },
        ))
        .map_err(|e| UsageError(format!("{}: {e}", args.file.display())))?;
    Ok(if args.json {
        format!("{}\n", report.to_json())
    } else {
        report.to_string()
    })
}

fn serve(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGTERM handler");
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        };
        poczta::run(config, shutdown).await
    })?;
    Ok(())
}

/// The running server's admin socket, or the database when none runs.
fn admin_channel(config: &Config) -> anyhow::Result<poczta::admin::Channel> {
    Ok(poczta::admin::Channel::open(
        &config.data_dir,
        &config.database_path(),
    )?)
}

fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    use serde_json::json;
    let request = match &cmd {
        UserCommand::Add(args) => {
            let address = local_address(&config, &args.address)?;
            let password = read_password(args)?;
            json!({"cmd": "user-add", "address": address, "password": password})
        }
        UserCommand::List => json!({"cmd": "user-list"}),
        UserCommand::Del { address } => json!({"cmd": "user-del", "address": address}),
        UserCommand::Passwd(args) => {
            let password = read_password(args)?;
            json!({"cmd": "user-passwd", "address": args.address, "password": password})
        }
    };
    let reply = admin_channel(&config)?.call(&request)?;
    if reply["ok"].as_bool() != Some(true) {
        let error = reply["error"].as_str().unwrap_or("failed").to_owned();
        return Err(if reply["usage"].as_bool() == Some(true) {
            UsageError(error).into()
        } else {
            anyhow!(error)
        });
    }
    match cmd {
        UserCommand::Add(_) => eprintln!("user {} added", reply["address"].as_str().unwrap_or("?")),
        UserCommand::List => {
            let mut out = std::io::stdout().lock();
            for u in reply["users"].as_array().into_iter().flatten() {
                writeln!(out, "{}", u.as_str().unwrap_or("?"))?;
            }
        }
        UserCommand::Del { address } => eprintln!(
            "user {} deleted with {} message(s)",
            address.trim().to_lowercase(),
            reply["messages"].as_u64().unwrap_or(0)
        ),
        UserCommand::Passwd(args) => {
            eprintln!("password of {} changed", args.address.trim().to_lowercase())
        }
    }
    Ok(())
}

/// Checks that an address is well formed and in one of our domains.
fn local_address(config: &Config, address: &str) -> anyhow::Result<String> {
    let a = users::normalize(address).map_err(|e| UsageError(e.to_string()))?;
    let domain = a.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if !config.is_local_domain(domain) {
        return Err(UsageError(format!(
            "{domain} is not a local domain of this server (server.domains in {} is [{}])",
            config.origin,
            config.domains.join(", ")
        ))
        .into());
    }
    Ok(a)
}

fn read_password(args: &PasswordArgs) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !args.password_stdin && stdin.is_terminal() {
        eprint!("Password for {} (it will echo): ", args.address);
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(UsageError("empty password (give it on standard input)".into()).into());
    }
    Ok(password.to_owned())
}
