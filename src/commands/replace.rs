//! `edgeops replace INVENTORY OLD [NEW]`: swap a dead board. Takes the cluster lock on the first
//! server and reads its node list, refuses what would be unsafe (a held lock, a Ready node, the
//! first server, a lost quorum), shows the plan and asks (refused without a terminal unless
//! `--yes`; `--dry-run` stops after the plan), deletes node OLD through the first server, then
//! runs `up --limit NEW` under the same lock (NEW defaults to OLD: the same name with the new
//! board's address in the inventory). The work is in `phases::replace`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use std::sync::Arc;

use crate::cli::{GlobalArgs, ReplaceArgs, UpArgs};
use crate::engine::runlog::RunLog;
use crate::exit::Failure;
use crate::inventory;
use crate::k3s::install::first_server;
use crate::phases::Quiet;
use crate::phases::replace::{OldNode, Replace};

use super::run_setup::with_interrupt;

pub fn run(global: &GlobalArgs, args: &ReplaceArgs) -> anyhow::Result<ExitCode> {
    let inventory = inventory::load(&args.inventory)?;
    let new = args.new.clone().unwrap_or_else(|| args.old.clone());
    let Some(new_host) = inventory.hosts.iter().find(|h| h.name == new) else {
        return Err(Failure::Usage(format!(
            "{}: no host named {new} (the new board must be in the inventory; nothing was changed)",
            args.inventory.display()
        ))
        .into());
    };
    let first = first_server(&inventory)
        .map_err(|e| Failure::Usage(e.to_string()))?
        .clone();
    if new == first.name {
        return Err(Failure::Usage(format!(
            "{new} is the first server: edgeops reaches the cluster through it, so it cannot be \
             the board brought in by a replacement (nothing was changed)"
        ))
        .into());
    }
    // The node name of OLD: the inventory's when OLD is still listed (same-name replacement).
    let old_node = inventory
        .hosts
        .iter()
        .find(|h| h.name == args.old)
        .map_or_else(|| args.old.clone(), |h| h.node_name.clone());
    if !args.yes && !args.dry_run && !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "refusing to replace without confirmation: stdin is not a terminal, so edgeops cannot \
             ask; pass --yes (nothing was changed)"
                .to_owned(),
        )
        .into());
    }

    // Only the first server is contacted before the plan is confirmed.
    let first_only = GlobalArgs {
        limit: Some(first.name.clone()),
        ..global.clone()
    };
    let prepared = super::run_setup::prepare(&first_only, &args.inventory, true)?;
    let redactor = super::run_setup::token_redactor(&inventory);
    let log = RunLog::create(&inventory.cluster.name, redactor);
    let runtime = super::runtime()?;
    let surveyed = runtime.block_on(with_interrupt(&prepared.ctx, async {
        let engine = prepared.connect(log.clone(), Arc::new(Quiet)).await;
        Replace::start(engine, &inventory, old_node.clone()).await
    }));
    let replace = match surveyed {
        Ok(replace) => replace,
        Err(e) => return Err(Failure::Usage(format!("replace refused: {e:#}")).into()),
    };
    let old = match replace.decision() {
        Ok(old) => old.clone(),
        Err(reason) => {
            let reason = reason.to_owned();
            runtime.block_on(replace.abort());
            return Err(Failure::Usage(format!("replace refused: {reason}")).into());
        }
    };

    let mut err = std::io::stderr().lock();
    writeln!(err, "replace plan (cluster {}):", inventory.cluster.name)?;
    match &old {
        OldNode::Absent => writeln!(
            err,
            "  1. node {old_node}: not in the cluster, nothing to take out"
        )?,
        OldNode::Dead {
            ready,
            member,
            quorum_after,
        } => {
            writeln!(
                err,
                "  1. delete node {old_node} (Ready={ready:?}) through {}{}",
                replace.first_name(),
                if *member {
                    " - k3s removes its etcd member with it"
                } else {
                    ""
                }
            )?;
            if let Some((healthy, members)) = quorum_after {
                writeln!(
                    err,
                    "     etcd after: {healthy} of {members} member(s) healthy (quorum kept)"
                )?;
            }
        }
    }
    writeln!(
        err,
        "  2. bring {new} ({}, {}) in: `edgeops up --limit {new}`",
        new_host.address,
        new_host.role.as_str()
    )?;
    if new != args.old && inventory.hosts.iter().any(|h| h.name == args.old) {
        writeln!(
            err,
            "note: {} is still in {}: remove it, or later runs will try to reach the dead board",
            args.old,
            args.inventory.display()
        )?;
    }
    for note in replace.messages() {
        writeln!(err, "note: {note}")?;
    }
    drop(err);
    if args.dry_run {
        runtime.block_on(replace.abort());
        eprintln!("--dry-run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&runtime, &old_node, &new)? {
        runtime.block_on(replace.abort());
        return Err(Failure::Usage("replace cancelled: nothing was changed".to_owned()).into());
    }
    let handed = match runtime.block_on(with_interrupt(&prepared.ctx, replace.delete())) {
        Ok(handed) => handed,
        Err(reason) => anyhow::bail!("replace stopped before {new} was brought in: {reason}"),
    };
    if matches!(old, OldNode::Dead { .. }) {
        eprintln!("replace: node {old_node} deleted from the cluster");
    }
    // `up` runs its own runtime; the lock stays held for it (see `HandedLock`).
    drop(runtime);
    let up_args = UpArgs {
        inventory: args.inventory.clone(),
        more: Vec::new(),
        dry_run: false,
        no_reboot: false,
        serial: false,
        rotate_tokens: false,
        rotate_join_token: false,
        ready_timeout: args.ready_timeout,
    };
    let limited = GlobalArgs {
        limit: Some(new.clone()),
        ..global.clone()
    };
    let joined = super::up::run(&limited, &up_args);
    if joined.is_err() {
        // `up` may have ended before it took the lock on: give it back.
        let note = super::runtime()?.block_on(async {
            handed
                .give_back(prepared.connect(log, Arc::new(Quiet)).await)
                .await
        });
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
    }
    joined
}

/// Ask on the terminal while the lock is held (as `reset` and `restore` ask): only `y`/`yes`
/// goes ahead; a termination signal or end of input is a no, so the lock is given back.
fn confirm(runtime: &tokio::runtime::Runtime, old: &str, new: &str) -> anyhow::Result<bool> {
    super::prompt::confirm_or_interrupted(
        runtime,
        &format!("Delete node {old} from the cluster and bring {new} in? [y/N] "),
    )
}
