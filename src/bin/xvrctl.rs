//! xvrctl: the operator's CLI for a running xvrd, over its control socket.
//! Tables for people by default, `--json` for programs.
//!
//! Exit codes: 0 done; 1 xvrd answered with an error; 2 bad usage; 3 xvrd
//! could not be reached (or answered something that is not the protocol).
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xvrctl", version, about = "Control a running xvrd")]
struct Args {
    /// xvrd's control socket.
    #[arg(long, global = true, default_value = xvr_control::server::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print xvrd's answer as JSON (one object), for programs.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// xvrd's version and protocol version.
    Version,
    /// Uptime, config generation, and whether each worker is alive.
    Health,
    /// Per-worker counters, and drops and events by name.
    Stats {
        /// Report rates (per second) every SECONDS (default 1) until
        /// interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
        /// With --watch: stop after this many reports.
        #[arg(long, requires = "watch")]
        count: Option<u64>,
    },
    /// The running state: all of it, or one table (tenants, ports,
    /// routes, neighbors, vteps, remote_vms, nat, firewall, ...).
    Dump {
        table: Option<String>,
        /// Only this tenant's entries.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Makes a desired state (a state file) the running one, changing
    /// only what differs; prints what changed.
    Apply {
        file: PathBuf,
        /// Validate and show the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Makes a list of changes (a JSON file: `[{"action": "add"|"del"|
    /// "replace", "table": "routes", "entry": {...}}]`), all or nothing.
    Commit {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Runs a described packet through the current tables without
    /// sending it: each stage's decision and the final action.
    Trace {
        /// The port it arrives on.
        #[arg(long)]
        port: String,
        #[arg(long)]
        src: String,
        #[arg(long)]
        dst: String,
        /// tcp (a SYN), udp or icmp (an echo request).
        #[arg(long, default_value = "icmp")]
        protocol: String,
        #[arg(long)]
        sport: Option<u16>,
        #[arg(long)]
        dport: Option<u16>,
        #[arg(long)]
        ttl: Option<u8>,
    },
    /// The tables a controller may fill: keys, match kinds, actions.
    Schema,
    /// Connection-tracking sessions (NAT, and flows between tiers with
    /// ACLs), filtered; `--flush` removes the ones selected.
    Sessions {
        #[arg(long)]
        tenant: Option<String>,
        /// Inside source or destination, or public address.
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        protocol: Option<String>,
        /// Sessions listed per worker at most.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        flush: bool,
    },
    /// Prints a completion script for a shell.
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    // Output piped into `head` that stops reading ends xvrctl quietly, as
    // it does any Unix filter; Rust's default (SIGPIPE ignored) would
    // panic in println!.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = Args::parse();
    let request = match &args.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "xvrctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Version => Ok(json!({ "op": "version" })),
        Command::Health => Ok(json!({ "op": "health" })),
        Command::Stats {
            watch: Some(every),
            count,
        } => return watch_stats(&args.socket, *every, *count, args.json),
        Command::Stats { .. } => Ok(json!({ "op": "stats" })),
        Command::Schema => Ok(json!({ "op": "schema" })),
        Command::Sessions {
            tenant,
            address,
            port,
            protocol,
            limit,
            flush,
        } => {
            let mut r = json!({ "op": "sessions", "flush": flush });
            for (field, value) in [
                ("tenant", tenant),
                ("address", address),
                ("protocol", protocol),
            ] {
                if let Some(v) = value {
                    r[field] = v.clone().into();
                }
            }
            for (field, value) in [("port", port.map(u64::from)), ("limit", *limit)] {
                if let Some(v) = value {
                    r[field] = v.into();
                }
            }
            Ok(r)
        }
        Command::Apply { file, dry_run } => read_json(file)
            .map(|state| json!({ "op": "apply", "state": state, "dry_run": dry_run })),
        Command::Commit { file, dry_run } => read_json(file)
            .map(|changes| json!({ "op": "commit", "changes": changes, "dry_run": dry_run })),
        Command::Trace {
            port,
            src,
            dst,
            protocol,
            sport,
            dport,
            ttl,
        } => {
            let mut r = json!({ "op": "trace", "port": port, "src": src, "dst": dst,
                                "protocol": protocol });
            for (field, value) in [
                ("sport", sport.map(u64::from)),
                ("dport", dport.map(u64::from)),
                ("ttl", ttl.map(u64::from)),
            ] {
                if let Some(v) = value {
                    r[field] = v.into();
                }
            }
            Ok(r)
        }
        Command::Dump { table, tenant } => {
            let mut r = json!({ "op": "dump" });
            if let Some(t) = table {
                r["table"] = t.clone().into();
            }
            if let Some(t) = tenant {
                r["tenant"] = t.clone().into();
            }
            Ok(r)
        }
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => {
            eprintln!("xvrctl: {message}");
            return ExitCode::from(2);
        }
    };
    let answer = match call(&args.socket, request) {
        Ok(answer) => answer,
        Err(message) => {
            eprintln!("xvrctl: {message}");
            return ExitCode::from(3);
        }
    };
    if let Some(error) = answer.get("error") {
        if args.json {
            println!("{answer}");
        }
        let message = error["message"].as_str().unwrap_or("?");
        eprintln!("xvrctl: xvrd refused it: {message}");
        return ExitCode::from(1);
    }
    let result = &answer["result"];
    if args.json {
        println!("{result}");
    } else {
        print_human(&args.command, result);
    }
    ExitCode::SUCCESS
}

/// `stats --watch`: each worker's packet rates and the drops and events
/// counted in each interval.
fn watch_stats(socket: &PathBuf, every: f64, count: Option<u64>, json_out: bool) -> ExitCode {
    if !(every.is_finite() && every >= 0.1) {
        eprintln!("xvrctl: --watch: {every} is not a number of seconds (at least 0.1)");
        return ExitCode::from(2);
    }
    let sample = || -> Result<(std::time::Instant, Value), String> {
        let answer = call(socket, json!({ "op": "stats" }))?;
        Ok((std::time::Instant::now(), answer["result"].clone()))
    };
    let Ok(mut last) = sample().map_err(|e| eprintln!("xvrctl: {e}")) else {
        return ExitCode::from(3);
    };
    let mut reports = 0;
    while count.is_none_or(|c| reports < c) {
        std::thread::sleep(std::time::Duration::from_secs_f64(every));
        let Ok(now) = sample().map_err(|e| eprintln!("xvrctl: {e}")) else {
            return ExitCode::from(3);
        };
        let seconds = now.0.duration_since(last.0).as_secs_f64();
        let delta = |a: &Value, b: &Value| {
            b.as_u64()
                .unwrap_or(0)
                .saturating_sub(a.as_u64().unwrap_or(0))
        };
        let workers: Vec<Value> = now.1["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(w, n)| {
                let o = &last.1["workers"][w];
                json!({
                    "worker": w,
                    "rx_pps": (delta(&o["rx"], &n["rx"]) as f64 / seconds).round(),
                    "tx_pps": (delta(&o["tx"], &n["tx"]) as f64 / seconds).round(),
                    "handed_in_pps": (delta(&o["handed_in"], &n["handed_in"]) as f64 / seconds).round(),
                    "sessions": n["sessions"],
                })
            })
            .collect();
        let changed = |section: &str| -> serde_json::Map<String, Value> {
            now.1[section]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let d = delta(&last.1[section][k], v);
                    (d > 0).then(|| (k.clone(), d.into()))
                })
                .collect()
        };
        // Per second, by name, of each counter of `section`'s entries.
        let rates = |section: &str, key: &str| -> Value {
            let rows = now.1[section].as_object().into_iter().flatten();
            rows.map(|(name, n)| {
                let o = &last.1[section][name];
                let mut row = json!({ key: name });
                for (counter, v) in n.as_object().into_iter().flatten() {
                    let per_second = (delta(&o[counter], v) as f64 / seconds).round();
                    row[format!("{counter}_per_s")] = per_second.into();
                }
                row
            })
            .collect()
        };
        let report = json!({ "seconds": seconds, "workers": workers,
                             "ports": rates("ports", "port"), "tenants": rates("tenants", "tenant"),
                             "drops": changed("drops"), "events": changed("events"),
                             "xdp": changed("xdp") });
        if json_out {
            println!("{report}");
        } else {
            print_table(&report["workers"]);
            for section in ["ports", "tenants"] {
                if report[section].as_array().is_some_and(|r| !r.is_empty()) {
                    print_table(&report[section]);
                }
            }
            for section in ["drops", "events", "xdp"] {
                for (name, n) in report[section].as_object().into_iter().flatten() {
                    println!("  {section}: {name} +{n}");
                }
            }
            println!();
        }
        last = now;
        reports += 1;
    }
    ExitCode::SUCCESS
}

/// A JSON file's content.
fn read_json(file: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))
}

/// Sends one request and reads its answer.
fn call(socket: &PathBuf, mut request: Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach xvrd at {}: {e} (is it running? --socket names another path)",
            socket.display()
        )
    })?;
    request["id"] = 1.into();
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("sending to xvrd: {e}"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("reading xvrd's answer: {e}"))?;
    serde_json::from_str(&answer)
        .map_err(|e| format!("xvrd's answer is not JSON ({e}): {answer:?}"))
}

fn print_human(command: &Command, result: &Value) {
    match command {
        Command::Version => println!(
            "xvrd {} (protocol {})",
            result["version"].as_str().unwrap_or("?"),
            result["protocol"]
        ),
        Command::Health => {
            println!(
                "uptime {:.0} s, config generation {}",
                result["uptime_s"].as_f64().unwrap_or(0.0),
                result["generation"]
            );
            print_table(&result["workers"]);
        }
        Command::Stats { .. } => {
            print_table(&result["workers"]);
            for (section, key) in [("ports", "port"), ("tenants", "tenant")] {
                println!("\n{section}:");
                print_table(&named_rows(&result[section], key));
            }
            for section in ["drops", "events", "xdp"] {
                if let Some(counters) = result[section].as_object().filter(|c| !c.is_empty()) {
                    println!("\n{section}:");
                    let width = counters.keys().map(String::len).max().unwrap_or(0);
                    for (name, n) in counters {
                        println!("  {name:width$}  {n:>12}");
                    }
                }
            }
        }
        Command::Dump { .. } => match result {
            Value::Array(_) => print_table(result),
            Value::Object(sections) => {
                for (name, section) in sections {
                    println!("{name}:");
                    match section {
                        Value::Array(_) => print_table(section),
                        other => println!("  {other}"),
                    }
                    println!();
                }
            }
            other => println!("{other}"),
        },
        Command::Apply { .. } | Command::Commit { .. } => {
            let what = if result["dry_run"] == true {
                "would change"
            } else {
                "changed"
            };
            let changes = result["changes"].as_object();
            if changes.is_none_or(|c| c.is_empty()) {
                println!("nothing to change (generation {})", result["generation"]);
            }
            for (table, change) in changes.into_iter().flatten() {
                for kind in ["added", "removed", "changed"] {
                    for key in change[kind].as_array().into_iter().flatten() {
                        println!("  {what} {table}: {kind} {}", key.as_str().unwrap_or("?"));
                    }
                }
            }
            if result["dry_run"] != true {
                println!("generation {}", result["generation"]);
            }
        }
        Command::Trace { .. } => {
            print_table(&result["steps"]);
            println!("action: {}", result["action"]);
            if !result["output"].is_null() {
                println!("leaves as: {}", result["output"]);
            }
        }
        Command::Schema => {
            let rows: Vec<Value> = result["tables"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let keys: Vec<String> = t["key"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|k| format!("{}:{}", k["field"].as_str().unwrap_or("?"), k["match"].as_str().unwrap_or("?")))
                        .collect();
                    let actions: Vec<&str> = t["actions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a["name"].as_str())
                        .collect();
                    json!({ "table": t["name"], "key": keys.join(" "), "actions": actions.join(", ") })
                })
                .collect();
            print_table(&Value::Array(rows));
        }
        Command::Sessions { .. } => {
            let rows: Vec<Value> = result["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let i = &s["inside"];
                    let inside = format!(
                        "{}:{} -> {}:{}",
                        i["src"].as_str().unwrap_or("?"),
                        i["sport"],
                        i["dst"].as_str().unwrap_or("?"),
                        i["dport"]
                    );
                    let public = match &s["public"] {
                        Value::Null => "-".to_string(),
                        p => format!("{}:{}", p["ip"].as_str().unwrap_or("?"), p["port"]),
                    };
                    json!({ "worker": s["worker"], "tenant": s["tenant"], "protocol": s["protocol"],
                            "inside": inside, "public": public, "state": s["state"],
                            "expires_in_s": s["expires_in_s"] })
                })
                .collect();
            print_table(&Value::Array(rows));
            println!(
                "{} matched, {} flushed",
                result["matched"], result["flushed"]
            );
        }
        Command::Completions { .. } => {}
    }
}

/// An array of objects as aligned columns (nested values as compact JSON).
/// `{name: {counter: n}}` as rows `{key: name, counter: n}`.
fn named_rows(section: &Value, key: &str) -> Value {
    let entries = section.as_object().into_iter().flatten();
    entries
        .map(|(name, counters)| {
            let mut row = json!({ key: name });
            for (counter, n) in counters.as_object().into_iter().flatten() {
                row[counter] = n.clone();
            }
            row
        })
        .collect()
}

fn print_table(rows: &Value) {
    let Some(rows) = rows.as_array() else {
        return println!("{rows}");
    };
    if rows.is_empty() {
        return println!("  (none)");
    }
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let cell = |row: &Value, column: &str| match row.get(column) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(columns.clone());
    for row in rows {
        line(columns.iter().map(|c| cell(row, c)).collect());
    }
}
