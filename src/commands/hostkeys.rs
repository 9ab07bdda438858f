//! `edgeops hostkeys INVENTORY`: first contact with fresh boards. Scans the selected hosts' host
//! keys at once, prints their fingerprints like `ssh-keygen -l`, and records new keys in the
//! inventory's known_hosts after the user confirms (`--yes` or a terminal prompt) or when they
//! match a file of expected fingerprints. A changed key is only replaced with
//! `--replace-changed`; a revoked one never.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use russh::keys::PublicKey;

use crate::cli::{GlobalArgs, HostkeysArgs, OutputFormat};
use crate::exit::Failure;
use crate::inventory::{self, Host};
use crate::ssh::known_hosts::{self, Verdict, fingerprint, known_hosts_line};
use crate::ssh::{ConnectOptions, SshContext, key_bits, key_label, scan_host_keys};

use super::exec::{SshSetup, ssh_setup};

pub fn run(global: &GlobalArgs, args: &HostkeysArgs) -> anyhow::Result<ExitCode> {
    let inventory = inventory::load(&args.inventory)?;
    let hosts = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let expected = match &args.expect {
        Some(file) => Some(Expected::load(file).map_err(|e| Failure::Usage(format!("{e:#}")))?),
        None => None,
    };
    let must_ask = !args.yes && expected.is_none() && !args.dry_run;
    if must_ask && !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "refusing to record host keys without confirmation: stdin is not a terminal; pass \
             --yes, --expect FILE (fingerprints collected when the boards were flashed) or \
             --dry-run (nothing was scanned or written)"
                .into(),
        )
        .into());
    }
    let setup = ssh_setup(&hosts, false)?;
    let concurrency = global.hosts_at_once(&inventory);
    let runtime = super::runtime()?;
    let scans = runtime.block_on(scan_all(&setup, concurrency));

    let write_file = |host: &Host| -> PathBuf {
        host.ssh
            .known_hosts
            .clone()
            .unwrap_or_else(default_known_hosts)
    };
    let mut reports = Vec::new();
    for (host, scan) in hosts.iter().zip(scans) {
        let target = setup
            .targets
            .iter()
            .find(|t| t.name == host.name)
            .expect("one target per host");
        reports.push(judge(
            host,
            target,
            &setup.ctx,
            scan,
            expected.as_ref(),
            args,
            write_file(host),
        ));
    }
    print_reports(global, &reports)?;

    let mut plan: BTreeMap<PathBuf, FileEdit> = BTreeMap::new();
    for report in &reports {
        for key in &report.keys {
            if let Some(line) = &key.write {
                let edit = plan.entry(report.file.clone()).or_default();
                if !edit.lines.contains(line) {
                    edit.lines.push(line.clone());
                }
                if let Some((file, number)) = &key.replaces {
                    plan.entry(file.clone()).or_default().drop.push(*number);
                }
            }
        }
    }
    let adding: usize = plan.values().map(|e| e.lines.len()).sum();
    let mut written = false;
    if adding == 0 {
        eprintln!("no new host keys to record");
    } else if args.dry_run {
        eprintln!("{adding} key(s) would be recorded (--dry-run: nothing written)");
    } else {
        let files: Vec<String> = plan
            .iter()
            .filter(|(_, e)| !e.lines.is_empty())
            .map(|(f, _)| f.display().to_string())
            .collect();
        let go = !must_ask || confirm(adding, &files.join(", "))?;
        if go {
            for (file, edit) in &plan {
                known_hosts::rewrite(file, &edit.drop, &edit.lines)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            eprintln!("recorded {adding} key(s) in {}", files.join(", "));
            written = true;
        } else {
            eprintln!("nothing written");
        }
    }

    let failed = reports.iter().filter(|r| r.failure.is_some()).count();
    for report in reports.iter().filter(|r| r.failure.is_some()) {
        eprintln!(
            "{}: {}",
            report.name,
            report.failure.as_deref().unwrap_or_default()
        );
    }
    let learned = reports
        .iter()
        .filter(|r| written && r.keys.iter().any(|k| k.write.is_some()))
        .count();
    let known = reports
        .iter()
        .filter(|r| r.failure.is_none() && r.keys.iter().all(|k| k.state == "known"))
        .count();
    eprintln!(
        "{} host(s): {learned} recorded, {known} already known, {failed} failed",
        reports.len()
    );
    super::reports::hosts_failed(failed, reports.len())?;
    Ok(ExitCode::SUCCESS)
}

/// `~/.ssh/known_hosts`, where hosts without an inventory `known_hosts` get their keys.
fn default_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".ssh/known_hosts")
}

type Scan = Result<Vec<PublicKey>, crate::ssh::SshError>;

/// Scan every host, `concurrency` at once, results in inventory order. Ctrl-C stops the scan.
async fn scan_all(setup: &SshSetup, concurrency: usize) -> Vec<Scan> {
    let SshSetup { ctx, targets } = setup;
    let work = futures::stream::iter(targets.iter().map(|opts| scan_one(opts, ctx)))
        .buffered(concurrency)
        .collect::<Vec<_>>();
    tokio::select! {
        results = work => results,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: nothing written");
            std::process::exit(130);
        }
    }
}

async fn scan_one(opts: &ConnectOptions, ctx: &SshContext) -> Scan {
    scan_host_keys(opts, ctx).await
}

/// Lines to drop from and to append to one known_hosts file.
#[derive(Debug, Default)]
struct FileEdit {
    drop: Vec<usize>,
    lines: Vec<String>,
}

/// One scanned key and what is done with it.
#[derive(Debug)]
struct KeyReport {
    display: String,
    state: String,
    /// The known_hosts line to append, if the key is to be recorded.
    write: Option<String>,
    /// The recorded line this key replaces (`--replace-changed`).
    replaces: Option<(PathBuf, usize)>,
}

#[derive(Debug)]
struct HostReport {
    name: String,
    address: String,
    file: PathBuf,
    keys: Vec<KeyReport>,
    /// Why this host fails (unreachable, changed or revoked key, no expected fingerprint).
    failure: Option<String>,
}

/// Compare one host's scanned keys with known_hosts and the expected fingerprints.
fn judge(
    host: &Host,
    target: &ConnectOptions,
    ctx: &SshContext,
    scan: Scan,
    expected: Option<&Expected>,
    args: &HostkeysArgs,
    file: PathBuf,
) -> HostReport {
    let mut report = HostReport {
        name: host.name.clone(),
        address: known_hosts::host_pattern(&target.address, target.port),
        file,
        keys: Vec::new(),
        failure: None,
    };
    let keys = match scan {
        Ok(keys) => keys,
        Err(err) => {
            report.failure = Some(format!("unreachable: {err}"));
            return report;
        }
    };
    let wanted = expected.map(|e| e.for_host(&host.name, &target.address, target.port));
    let mut problems = Vec::new();
    for key in &keys {
        let fp = fingerprint(key);
        let display = format!("{} {fp} ({})", key_bits(key), key_label(key));
        let verdict = ctx.known_hosts.check(&target.address, target.port, key);
        let line = known_hosts_line(&target.address, target.port, key);
        let matches_expected = wanted.as_ref().map(|w| w.contains(&fp));
        let (state, write, replaces) = match verdict {
            Verdict::Known => ("known".to_string(), None, None),
            Verdict::Revoked { recorded_at } => {
                problems.push(format!("key {fp} is @revoked at {recorded_at}"));
                (format!("REVOKED ({recorded_at})"), None, None)
            }
            Verdict::Changed { recorded_at } => {
                if !args.replace_changed {
                    problems.push(format!(
                        "HOST KEY CHANGED: {fp} differs from the key recorded at {recorded_at}; \
                         not replaced (pass --replace-changed if the host was reinstalled)"
                    ));
                    (format!("CHANGED ({recorded_at})"), None, None)
                } else if matches_expected == Some(false) {
                    problems.push(format!(
                        "HOST KEY CHANGED to {fp}, which the expected fingerprints do not list"
                    ));
                    (format!("CHANGED, not expected ({recorded_at})"), None, None)
                } else {
                    (
                        format!("changed, replaces {recorded_at}"),
                        Some(line),
                        Some((recorded_at.file.clone(), recorded_at.line)),
                    )
                }
            }
            Verdict::Unknown { .. } => match matches_expected {
                Some(false) => ("new, not expected".to_string(), None, None),
                _ => ("new".to_string(), Some(line), None),
            },
        };
        report.keys.push(KeyReport {
            display,
            state,
            write,
            replaces,
        });
    }
    if let (Some(wanted), Some(expected)) = (&wanted, expected) {
        if wanted.is_empty() {
            problems.push(format!(
                "no expected fingerprint for {} in {}",
                host.name,
                expected.file.display()
            ));
        } else if !keys.iter().any(|k| wanted.contains(&fingerprint(k))) {
            problems.push(format!(
                "none of the offered keys matches the fingerprints expected in {}",
                expected.file.display()
            ));
        }
    }
    if !problems.is_empty() {
        // A host with a suspicious key gets nothing recorded, not even its other new keys.
        for key in &mut report.keys {
            key.write = None;
            key.replaces = None;
        }
        report.failure = Some(problems.join("; "));
    }
    report
}

fn print_reports(global: &GlobalArgs, reports: &[HostReport]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        for report in reports {
            let keys: Vec<serde_json::Value> = report
                .keys
                .iter()
                .map(|k| serde_json::json!({"key": k.display, "state": k.state}))
                .collect();
            let line = serde_json::json!({
                "host": report.name,
                "address": report.address,
                "known_hosts": report.file,
                "keys": keys,
                "error": report.failure,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let mut rows = vec![
        ["HOST", "ADDRESS", "KEY", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for report in reports {
        if report.keys.is_empty() {
            rows.push(vec![
                report.name.clone(),
                report.address.clone(),
                "-".into(),
                "unreachable".into(),
            ]);
        }
        for key in &report.keys {
            rows.push(vec![
                report.name.clone(),
                report.address.clone(),
                key.display.clone(),
                key.state.clone(),
            ]);
        }
    }
    write!(out, "{}", super::run_tables::table(&rows))?;
    out.flush()?;
    Ok(())
}

fn confirm(keys: usize, files: &str) -> anyhow::Result<bool> {
    super::prompt::confirm(&format!(
        "Record {keys} host key(s) in {files}? Compare the fingerprints above with the \
         boards' own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) first. [y/N] "
    ))
}

/// Fingerprints collected when the boards were flashed. One entry per line:
/// `HOST SHA256:...` (HOST: inventory name, address, or `[address]:port`), or a known_hosts /
/// `ssh-keyscan` line (`HOST[,HOST...] TYPE BASE64`). `#` starts a comment.
#[derive(Debug)]
struct Expected {
    file: PathBuf,
    by_host: HashMap<String, Vec<String>>,
}

impl Expected {
    fn load(file: &Path) -> anyhow::Result<Expected> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading expected fingerprints {}", file.display()))?;
        Expected::parse(file, &text)
    }

    fn parse(file: &Path, text: &str) -> anyhow::Result<Expected> {
        let mut by_host: HashMap<String, Vec<String>> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", file.display(), index + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (hosts, fp) = match fields.as_slice() {
                [hosts, fp] if fp.starts_with("SHA256:") => (*hosts, fp.to_string()),
                [hosts, _key_type, base64, ..] => {
                    let key = russh::keys::parse_public_key_base64(base64).map_err(|e| {
                        anyhow::anyhow!("{at}: not a public key ({e}); expected `HOST SHA256:...` or a known_hosts line")
                    })?;
                    (*hosts, fingerprint(&key))
                }
                _ => anyhow::bail!(
                    "{at}: expected `HOST SHA256:...` or a known_hosts line `HOST TYPE BASE64`"
                ),
            };
            for host in hosts.split(',') {
                by_host
                    .entry(host.to_string())
                    .or_default()
                    .push(fp.clone());
            }
        }
        Ok(Expected {
            file: file.to_path_buf(),
            by_host,
        })
    }

    /// Every fingerprint listed for the host under its name, address or `[address]:port`.
    fn for_host(&self, name: &str, address: &str, port: u16) -> Vec<String> {
        let pattern = known_hosts::host_pattern(address, port);
        let mut found = Vec::new();
        for key in [name, address, pattern.as_str()] {
            for fp in self.by_host.get(key).into_iter().flatten() {
                if !found.contains(fp) {
                    found.push(fp.clone());
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKP9q3oGDqfotxcrFc0TuXbRleBatw7AyUjj2ON8V4cZ";

    #[test]
    fn expected_file_takes_fingerprints_and_keyscan_lines() {
        let key = russh::keys::parse_public_key_base64(ED_A).unwrap();
        let fp = fingerprint(&key);
        let text = format!(
            "# flashed 2026-12-01\npi-01 SHA256:abc\n10.0.0.2,pi-02 ssh-ed25519 {ED_A} root@pi-02\n[10.0.0.3]:2222 {fp}\n"
        );
        let e = Expected::parse(Path::new("fp.txt"), &text).unwrap();
        assert_eq!(e.for_host("pi-01", "10.0.0.1", 22), vec!["SHA256:abc"]);
        assert_eq!(e.for_host("pi-02", "10.0.0.9", 22), vec![fp.clone()]);
        assert_eq!(e.for_host("x", "10.0.0.2", 22), vec![fp.clone()]);
        assert_eq!(e.for_host("pi-03", "10.0.0.3", 2222), vec![fp]);
        assert!(e.for_host("pi-03", "10.0.0.3", 22).is_empty());
    }

    #[test]
    fn expected_file_errors_name_the_line() {
        let err = Expected::parse(Path::new("fp.txt"), "pi-01 SHA256:abc\npi-02\n").unwrap_err();
        assert!(err.to_string().starts_with("fp.txt:2: "), "{err}");
        let err = Expected::parse(Path::new("fp.txt"), "pi-01 ssh-ed25519 !!\n").unwrap_err();
        assert!(
            err.to_string().starts_with("fp.txt:1: not a public key"),
            "{err}"
        );
    }
}
