//! `edgeops replace INVENTORY OLD [NEW]`: swap a dead board. Reads the first server's node
//! list, refuses what would be unsafe (a Ready node, the first server, a lost quorum), shows
//! the plan and asks (refused without a terminal unless `--yes`; `--dry-run` stops after the
//! plan), deletes node OLD through the first server, then runs `up --limit NEW` (NEW defaults
//! to OLD: the same name with the new board's address in the inventory).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{GlobalArgs, ReplaceArgs, UpArgs};
use crate::exit::Failure;
use crate::fleet::{Fleet, Silent};
use crate::inventory;
use crate::k3s::install::first_server;
use crate::phases::replace::{self, OldNode};

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
    let runtime = super::runtime()?;
    let fleet = runtime.block_on(Fleet::connect_all(
        prepared.targets.clone(),
        prepared.ctx.clone(),
        prepared.fleet_settings.clone(),
        Arc::new(Silent),
    ));
    let decided = runtime.block_on(async {
        let session = fleet.session(&first.name).ok_or_else(|| {
            format!(
                "first server {} is unreachable: the cluster cannot be asked about {old_node} \
                 (nothing was changed)",
                first.name
            )
        })?;
        let nodes = replace::read_nodes(session).await?;
        replace::decide(&nodes, &old_node, &first.node_name).map_err(|e| e.to_string())
    });
    let old = match decided {
        Ok(old) => old,
        Err(reason) => {
            runtime.block_on(fleet.close_all());
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
                first.name,
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
    drop(err);
    if args.dry_run {
        runtime.block_on(fleet.close_all());
        eprintln!("--dry-run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&old_node, &new)? {
        runtime.block_on(fleet.close_all());
        return Err(Failure::Usage("replace cancelled: nothing was changed".to_owned()).into());
    }
    if matches!(old, OldNode::Dead { .. }) {
        let deleted = runtime.block_on(async {
            match fleet.session(&first.name) {
                Some(session) => replace::delete_node(session, &old_node).await,
                None => Err(format!("{}: no SSH session", first.name)),
            }
        });
        if let Err(reason) = deleted {
            runtime.block_on(fleet.close_all());
            anyhow::bail!("replace stopped before {new} was brought in: {reason}");
        }
        eprintln!("replace: node {old_node} deleted from the cluster");
    }
    runtime.block_on(fleet.close_all());
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
    super::up::run(&limited, &up_args)
}

/// Ask on the terminal; only `y`/`yes` goes ahead.
fn confirm(old: &str, new: &str) -> anyhow::Result<bool> {
    super::prompt::confirm(&format!(
        "Delete node {old} from the cluster and bring {new} in? [y/N] "
    ))
}
