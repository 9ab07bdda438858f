//! `edgeops reset INVENTORY [--limit] [--yes | --dry-run] [--gitlab]`: show what will be wiped per
//! host (and, with `--gitlab`, removed from GitLab), ask on a terminal (refuse without one unless
//! `--yes`; `--dry-run` stops after the plan), uninstall k3s agents first, servers after, the
//! first server last, then deregister the cluster from GitLab if asked, and report per host
//! (table or JSON). The work is in `phases::reset`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::cli::{GlobalArgs, OutputFormat, ResetArgs};
use crate::engine::PhaseResult;
use crate::engine::runlog::RunLog;
use crate::exit::Failure;
use crate::gitlab::ClientOptions;
use crate::inventory::{self, Inventory};
use crate::k3s::drain::DrainOptions;
use crate::k3s::token::read_secret;
use crate::phases::reset::outcome::ResetPlan;
use crate::phases::reset::{
    GitLabReset, KubeconfigEntry, Reset, ResetOptions, ResetReport, Scope, scope,
};
use crate::phases::{Observer, Status};

use super::run_setup::{default_kubeconfig_path, prepare, with_interrupt};
use super::run_tables::{gitlab_rows, table};

pub fn run(global: &GlobalArgs, args: &ResetArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be refused offline is refused before any host is contacted.
    let inventory = inventory::load(&args.inventory)?;
    let selected: Vec<String> = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?
        .into_iter()
        .map(|h| h.name.clone())
        .collect();
    let scope = scope(&inventory, &selected).map_err(|e| Failure::Usage(e.to_string()))?;
    let gitlab = if args.gitlab {
        Some(gitlab_reset(&inventory, scope)?)
    } else {
        None
    };
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !args.dry_run && !interactive {
        return Err(Failure::Usage(
            "refusing to reset without confirmation: stdin is not a terminal, so edgeops cannot \
             ask; pass --yes to reset non-interactively (nothing was changed)"
                .to_owned(),
        )
        .into());
    }

    let prepared = prepare(global, &args.inventory, true)?;
    let redactor = super::run_setup::token_redactor(&prepared.inventory);
    if let Some(gitlab) = &gitlab {
        redactor.add(gitlab.api_token.expose_secret());
    }
    let log = RunLog::create(&prepared.inventory.cluster.name, redactor);
    let options = ResetOptions {
        kubeconfig: KubeconfigEntry {
            path: default_kubeconfig_path()?,
            context: prepared.inventory.cluster.name.clone(),
        },
        gitlab,
        drain: (!args.skip_drain).then_some(DrainOptions {
            timeout: args.drain_timeout,
            force: args.force,
            delete_emptydir_data: args.delete_emptydir_data,
        }),
    };
    let view = super::run_progress(global);
    let observer: std::sync::Arc<dyn Observer> = view.clone();
    let runtime = super::runtime()?;
    let surveyed = runtime.block_on(with_interrupt(&prepared.ctx, async {
        let engine = prepared.connect(log, observer).await;
        Reset::start(engine, &prepared.inventory, scope, &selected, options).await
    }));
    view.finish();
    let reset = surveyed?;
    if prepared.ctx.cancel.is_cancelled() {
        runtime.block_on(reset.abort());
        return Err(Failure::Usage("reset interrupted: nothing was changed".to_owned()).into());
    }

    let show_plan = !global.quiet && global.output == OutputFormat::Text;
    if args.dry_run {
        if show_plan {
            print_plan(&mut std::io::stdout().lock(), &reset)?;
        }
        let plan = runtime.block_on(with_interrupt(&prepared.ctx, reset.dry_run()));
        view.finish();
        print_dry_run(global, &plan)?;
        if let Some(why) = &plan.refused {
            anyhow::bail!(
                "reset --dry-run: the reset would stop here: {why} (nothing was changed)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if show_plan || !args.yes {
        print_plan(&mut std::io::stderr().lock(), &reset)?;
    }
    let must_ask = !reset.nothing_to_do() || reset.scope() == Scope::Hosts;
    if must_ask && !args.yes && !confirm(&runtime, &reset)? {
        runtime.block_on(reset.abort());
        return Err(Failure::Usage("reset cancelled: nothing was changed".to_owned()).into());
    }

    let report = runtime.block_on(with_interrupt(&prepared.ctx, reset.execute()));
    view.finish();
    print_report(global, &report)?;
    super::reports::hosts_failed(report.failed_hosts(), report.hosts.len())?;
    if report.failed {
        anyhow::bail!("the hosts are reset, but the kubeconfig could not be updated (see above)");
    }
    if let Some(gitlab) = report.gitlab.as_ref().filter(|g| g.is_failure()) {
        anyhow::bail!(
            "the hosts are reset, but GitLab was not cleaned up: {}",
            gitlab.reason.as_deref().unwrap_or("see the GitLab table")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--gitlab`, checked offline before anything is touched: it needs a `[gitlab]` section, a
/// whole-cluster reset (removing the agent under a cluster that stays would cut it off GitLab),
/// and the API token.
fn gitlab_reset(inventory: &Inventory, scope: Scope) -> anyhow::Result<GitLabReset> {
    let Some(gitlab) = &inventory.gitlab else {
        return Err(Failure::Usage(
            "--gitlab removes the cluster's agent and runner from GitLab, but the inventory has              no [gitlab] section: drop --gitlab (nothing was changed)"
                .to_owned(),
        )
        .into());
    };
    if scope != Scope::Cluster {
        return Err(Failure::Usage(
            "--gitlab needs a whole-cluster reset: the selected hosts leave a cluster that stays,              and its GitLab agent and runner stay with it; drop --limit to reset the whole              cluster, or drop --gitlab (nothing was changed)"
                .to_owned(),
        )
        .into());
    }
    let token = read_secret(&gitlab.token, "GitLab API token")
        .map_err(|e| Failure::Usage(e.to_string()))?
        .ok_or_else(|| Failure::Usage("[gitlab] names no token_env or token_file".to_owned()))?;
    Ok(GitLabReset::new(
        &inventory.cluster.name,
        gitlab,
        token,
        ClientOptions::default(),
    ))
}

/// What will be wiped, per host in execution order: on stderr before the prompt (stdout keeps
/// the report), on stdout for `--dry-run` (the plan is the report).
fn print_plan(err: &mut dyn Write, reset: &Reset) -> anyhow::Result<()> {
    let what = match reset.scope() {
        Scope::Cluster => "the whole cluster: agents, then servers, the first server last",
        Scope::Hosts => {
            "these hosts leave the cluster, which stays: each is cordoned and drained first \
             (unless --skip-drain), then wiped, and its Node object deleted"
        }
    };
    writeln!(err, "reset plan ({what}):")?;
    let mut rows = vec![
        [
            "HOST",
            "PHASE",
            "ROLE",
            "K3S",
            "DRAIN",
            "UNINSTALL",
            "WIPES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for plan in &reset.plan() {
        let (k3s, method, wipes) = match (&plan.found, &plan.error) {
            (Some(found), _) => (found.installed(), found.method(), found.wipes()),
            (None, error) => (
                "?".to_owned(),
                "-".to_owned(),
                format!("cannot tell: {}", error.as_deref().unwrap_or("no answer")),
            ),
        };
        let drain = match (reset.scope(), reset.drain()) {
            (Scope::Cluster, _) => "-".to_owned(),
            (Scope::Hosts, Some(options)) => options.describe(),
            (Scope::Hosts, None) => "skipped (--skip-drain)".to_owned(),
        };
        rows.push(vec![
            plan.host.clone(),
            plan.phase.to_owned(),
            plan.role.to_owned(),
            k3s,
            drain,
            method,
            wipes,
        ]);
    }
    write!(err, "{}", table(&rows))?;
    match reset.kubeconfig_to_remove() {
        Ok(Some(entry)) => writeln!(
            err,
            "kubeconfig: context {} (its cluster and user too) will be removed from {}",
            entry.context,
            entry.path.display()
        )?,
        Ok(None) if reset.scope() == Scope::Cluster => {
            writeln!(err, "kubeconfig: nothing of this cluster in it")?
        }
        Ok(None) => writeln!(err, "kubeconfig: left alone (the cluster stays)")?,
        Err(e) => writeln!(err, "kubeconfig: cannot read it: {e:#}")?,
    }
    if let Some(gitlab) = reset.gitlab() {
        writeln!(
            err,
            "gitlab: once the first server is reset, will remove from {}:",
            gitlab.url
        )?;
        for line in gitlab.plan() {
            writeln!(err, "  - {line}")?;
        }
    }
    Ok(())
}

/// `--dry-run`: what each phase would do (text, after the plan table), or the whole plan (JSON).
fn print_dry_run(global: &GlobalArgs, plan: &ResetPlan) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(plan)?)?;
        return Ok(());
    }
    if global.quiet {
        return Ok(());
    }
    writeln!(out, "phases:")?;
    for phase in &plan.phases {
        match &phase.result {
            PhaseResult::Planned(lines) => {
                writeln!(out, "  {}: would", phase.phase)?;
                for (host, line) in lines {
                    writeln!(out, "    {host}: {line}")?;
                }
            }
            PhaseResult::Applied => writeln!(out, "  {}: done (read-only)", phase.phase)?,
            PhaseResult::NothingToDo => writeln!(out, "  {}: nothing to do", phase.phase)?,
            PhaseResult::NotReached(why) => {
                writeln!(out, "  {}: not reached ({why})", phase.phase)?
            }
        }
    }
    for message in &plan.messages {
        writeln!(out, "note: {message}")?;
    }
    writeln!(out, "dry run: nothing was changed")?;
    Ok(())
}

/// Ask on the terminal. Only `y` or `yes` goes ahead; a termination signal or end of input is
/// a no.
fn confirm(runtime: &tokio::runtime::Runtime, reset: &Reset) -> anyhow::Result<bool> {
    let hosts = reset.plan().len();
    super::prompt::confirm_or_interrupted(
        runtime,
        &format!(
            "Reset {hosts} host(s){}? k3s and its data will be deleted and cannot be restored. [y/N] ",
            if reset.gitlab().is_some() {
                " and remove the cluster from GitLab"
            } else {
                ""
            }
        ),
    )
}

fn print_report(global: &GlobalArgs, report: &ResetReport) -> anyhow::Result<()> {
    super::reports::print(global, report, report_text)
}

fn report_text(report: &ResetReport) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    writeln!(
        out,
        "cluster {}: reset {}",
        report.cluster,
        match report.scope {
            Scope::Cluster => "of the whole cluster",
            Scope::Hosts => "of the selected hosts (the cluster stays)",
        }
    )?;
    let mut rows = vec![
        [
            "HOST",
            "PHASE",
            "ROLE",
            "K3S",
            "RESULT",
            "TIME",
            "HOW / REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for host in &report.hosts {
        let how = match host.status {
            Status::Failed | Status::Skipped => host.reason.clone().unwrap_or_default(),
            _ => host.method.clone().unwrap_or_default(),
        };
        rows.push(vec![
            host.host.clone(),
            host.phase.to_owned(),
            host.role.to_owned(),
            host.installed.clone(),
            host.result_text(),
            format!("{:.1}s", host.seconds),
            how,
        ]);
    }
    write!(out, "{}", table(&rows))?;
    for message in &report.messages {
        writeln!(out, "note: {message}")?;
    }
    if let Some(kubeconfig) = &report.kubeconfig {
        writeln!(out, "kubeconfig: {kubeconfig}")?;
    }
    if let Some(gitlab) = &report.gitlab {
        write!(out, "{}", gitlab_rows(gitlab))?;
        let count = |word: &str| gitlab.rows.iter().filter(|r| r.result == word).count();
        let summary = match gitlab.status {
            Status::Skipped => "skipped".to_owned(),
            _ => format!(
                "{} deleted, {} already gone, {} failed",
                count("deleted"),
                count("already gone"),
                count("failed")
            ),
        };
        writeln!(
            out,
            "gitlab: {summary}{}",
            gitlab
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )?;
    }
    if let Some(dir) = &report.log_dir {
        writeln!(out, "logs: {dir}")?;
    }
    let count = |s: Status| report.hosts.iter().filter(|h| h.status == s).count();
    writeln!(
        out,
        "{} host(s): {} reset, {} already clean, {} failed",
        report.hosts.len(),
        count(Status::Done),
        count(Status::Unchanged),
        count(Status::Failed) + count(Status::Skipped),
    )?;
    Ok(out)
}
