//! `edgeops unlock INVENTORY`: show who holds the cluster lock on the first server (who, host,
//! pid, run id, age, command) and remove it after confirmation (`--yes`, or a prompt on a
//! terminal). The removal is compare-and-remove: a lock taken meanwhile by another run stays.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{GlobalArgs, UnlockArgs};
use crate::engine::Output;
use crate::exit::Failure;
use crate::host::lock::{self, LOCK_PATH, LockLine, Workstation};
use crate::inventory;
use crate::ssh::ExecRequest;

use super::run_setup::first_server_only;

/// How long reading or removing the lock may take on the first server.
const UNLOCK_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(global: &GlobalArgs, args: &UnlockArgs) -> anyhow::Result<ExitCode> {
    let _ = global;
    let interactive = std::io::stdin().is_terminal();
    let first = first_server_only(&args.inventory)?;
    let (inventory, host) = (&first.inventory, &first.host);
    let runtime = super::runtime()?;
    let engine = runtime.block_on(first.connect());
    let id = engine
        .ids()
        .next()
        .expect("the first server is the engine's one host");
    if let Some(failure) = engine.unreachable(id) {
        anyhow::bail!("connecting to the first server {host}: {failure}");
    }
    let exec = |title: &str, script: String| {
        let request = ExecRequest::new(script)
            .sudo(true)
            .timeout(UNLOCK_COMMAND_TIMEOUT);
        let out = runtime
            .block_on(engine.run(id, title, &request, Output::Logged))
            .map_err(|failure| anyhow::anyhow!("{host}: {LOCK_PATH}: {failure}"))?;
        Ok::<_, anyhow::Error>(out.stdout_lossy())
    };
    let result = (|| {
        let answer = exec("read the lock", lock::read_script())?;
        let mut lines = answer.lines();
        let now = match lines.next().map(str::trim) {
            Some("none") => {
                println!("cluster {}: no lock on {host}", inventory.cluster.name);
                return Ok(ExitCode::SUCCESS);
            }
            Some(now) => now
                .strip_prefix("now ")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| anyhow::anyhow!("{host}: unexpected answer: {now}"))?,
            None => anyhow::bail!("{host}: no answer"),
        };
        let raw = lines.next().unwrap_or_default();
        let held = LockLine::parse(raw).ok_or_else(|| {
            anyhow::anyhow!(
                "{host}: {LOCK_PATH} holds no edgeops lock line ({raw:?}); remove it by hand"
            )
        })?;
        describe(inventory, host, &held, now);
        if !args.yes {
            if !interactive {
                return Err(Failure::Usage(
                    "refusing to remove the lock without confirmation: stdin is not a terminal; \
                     pass --yes (nothing was changed)"
                        .to_owned(),
                )
                .into());
            }
            if !super::prompt::confirm(
                "Remove this lock? A run still going would lose its protection. [y/N] ",
            )? {
                eprintln!("lock kept");
                return Ok(ExitCode::from(1));
            }
        }
        let removed = exec("remove the lock", lock::remove_script(&held.line))?;
        match removed.trim() {
            "removed" => println!("removed the lock on {host}"),
            "gone" => println!("the lock on {host} was already gone"),
            other => {
                let now_held = other.strip_prefix("changed ").unwrap_or(other);
                eprintln!("the lock on {host} changed meanwhile and was kept: {now_held}");
                return Ok(ExitCode::from(1));
            }
        }
        Ok(ExitCode::SUCCESS)
    })();
    runtime.block_on(engine.close());
    result
}

fn describe(inventory: &inventory::Inventory, host: &str, held: &LockLine, now: u64) {
    let age = Duration::from_secs(now.saturating_sub(held.since_epoch));
    let here = Workstation::current();
    let state = match held.pid {
        _ if held.host.as_deref() != Some(here.hostname.as_str()) => "on another workstation",
        Some(pid) if here.edgeops_pids.contains(&pid) => "running edgeops on this workstation",
        _ => "gone from this workstation",
    };
    let unknown = || "unknown".to_owned();
    println!(
        "cluster {} is locked on {host} ({LOCK_PATH}):",
        inventory.cluster.name
    );
    println!("  who:     {}", held.who);
    println!(
        "  pid:     {} ({state})",
        held.pid.map_or_else(unknown, |p| p.to_string())
    );
    println!("  run id:  {}", held.run_id.clone().unwrap_or_else(unknown));
    println!(
        "  command: {}",
        held.command.clone().unwrap_or_else(unknown)
    );
    println!(
        "  age:     {} (taken over after {}: lock_expiry)",
        humantime::format_duration(age),
        humantime::format_duration(inventory.cluster.lock_expiry)
    );
    let _ = std::io::stdout().flush();
}
