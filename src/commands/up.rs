//! `edgeops up INVENTORY`: every host to a Ready k3s cluster (idempotent), with live progress
//! and a per-host table at the end. Also the wiring `plan`, `status` and `kubeconfig` share:
//! inventory → selected hosts → SSH targets, the progress view, and the tables.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{GlobalArgs, OutputFormat, UpArgs};
use crate::engine::runlog::{Redactor, RunLog};
use crate::exit::Failure;
use crate::fleet::FleetSettings;
use crate::gitlab::ClientOptions;
use crate::inventory::{self, Host, Inventory};
use crate::k3s::install::first_server;
use crate::k3s::token::{read_join_token, read_secret};
use crate::phases::gitlab::{GitLabReport, GitLabSetup};
use crate::phases::{
    self, KubeconfigTarget, Mode, Observer, Progress, Quiet, Reboot, RunReport, Status, UpOptions,
};
use crate::ssh::{ConnectOptions, SshContext};
use secrecy::ExposeSecret;

pub fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mode = if args.dry_run { Mode::Plan } else { Mode::Up };
    let reboot = if args.no_reboot {
        Reboot::Never
    } else if args.serial {
        Reboot::Serial
    } else {
        Reboot::AllAtOnce
    };
    run_phases_with(
        global,
        &args.inventory,
        mode,
        args.ready_timeout,
        reboot,
        args.rotate_tokens,
        args.rotate_join_token,
    )
}

/// `up` and `plan`: the same phases, `plan` stopping after the decisions.
pub fn run_phases(
    global: &GlobalArgs,
    path: &std::path::Path,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
) -> anyhow::Result<ExitCode> {
    run_phases_with(global, path, mode, ready_timeout, reboot, false, false)
}

/// `run_phases`, with `--rotate-tokens` for the GitLab phase.
fn run_phases_with(
    global: &GlobalArgs,
    path: &std::path::Path,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
    rotate_tokens: bool,
    rotate_join_token: bool,
) -> anyhow::Result<ExitCode> {
    let prepared = prepare(global, path, mode == Mode::Up)?;
    let (options, redactor) = run_options(
        &prepared,
        mode,
        ready_timeout,
        reboot,
        rotate_tokens,
        rotate_join_token,
    )?;
    let log = run_log(&prepared.inventory.cluster.name, mode, redactor);
    let view = ProgressView::new(global);
    let observer: Arc<dyn Observer> = view.clone();
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let Prepared {
            inventory,
            hosts,
            targets,
            ctx,
            ..
        } = &prepared;
        with_interrupt(
            ctx,
            phases::run(
                inventory,
                hosts.clone(),
                targets.clone(),
                ctx.clone(),
                options,
                observer,
                log,
            ),
        )
        .await
    });
    view.finish();
    let report = report?;
    print_report(global, &report)?;
    outcome(&report)
}

/// What one cluster's `up` or `plan` needs besides its hosts, read before any host is touched
/// (a missing token is bad input, exit 2): the join token, the GitLab setup and the options,
/// with the redactor that knows their secrets. Fleet runs (`crate::fleetrun`) build one per
/// cluster, all before the first run log is made.
pub fn run_options(
    prepared: &Prepared,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
    rotate_tokens: bool,
    rotate_join_token: bool,
) -> anyhow::Result<(UpOptions, Redactor)> {
    let token = read_join_token(&prepared.inventory.cluster.token)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if rotate_join_token && token.is_none() {
        return Err(Failure::Usage(format!(
            "{}: --rotate-join-token needs the new token in [cluster] token_env or token_file",
            prepared.inventory.path.display()
        ))
        .into());
    }
    let redactor = Redactor::default();
    if let Some(token) = &token {
        redactor.add(token.expose());
    }
    if let Some(registries) = &prepared.inventory.registries {
        for secret in crate::k3s::registries::secret_values(registries)
            .map_err(|e| Failure::Usage(e.to_string()))?
        {
            redactor.add(&secret);
        }
    }
    let gitlab = gitlab_setup(&prepared.inventory, mode, ready_timeout, rotate_tokens)?;
    if let Some(token) = gitlab.as_ref().and_then(|g| g.api_token.as_ref()) {
        redactor.add(token.expose_secret());
    }
    let kubeconfig = match mode {
        Mode::Up => Some(KubeconfigTarget {
            path: default_kubeconfig_path()?,
            context: prepared.inventory.cluster.name.clone(),
        }),
        Mode::Plan => None,
    };
    let options = UpOptions {
        mode,
        ready_timeout,
        kubeconfig,
        lock_stale_after: prepared.inventory.cluster.lock_expiry,
        fleet: prepared.fleet_settings.clone(),
        token,
        reboot,
        gitlab,
        rotate_join_token,
    };
    Ok((options, redactor))
}

/// The run's log folder: `up` keeps one per run, `plan` none.
pub fn run_log(cluster: &str, mode: Mode, redactor: Redactor) -> RunLog {
    match mode {
        Mode::Up => RunLog::create(cluster, redactor),
        Mode::Plan => RunLog::disabled(redactor),
    }
}

/// What the GitLab phase needs, read before any host is touched: a missing API token is bad
/// input (exit 2). `plan` calls no GitLab endpoint, so it needs no token.
fn gitlab_setup(
    inventory: &Inventory,
    mode: Mode,
    deploy_timeout: Duration,
    rotate_tokens: bool,
) -> anyhow::Result<Option<GitLabSetup>> {
    let Some(gitlab) = &inventory.gitlab else {
        return Ok(None);
    };
    let api_token = match mode {
        Mode::Plan => None,
        Mode::Up => Some(
            read_secret(&gitlab.token, "GitLab API token")
                .map_err(|e| Failure::Usage(e.to_string()))?
                .ok_or_else(|| {
                    Failure::Usage("[gitlab] names no token_env or token_file".to_owned())
                })?,
        ),
    };
    Ok(Some(GitLabSetup {
        api_token,
        rotate_tokens,
        deploy_timeout,
        client: ClientOptions::default(),
    }))
}

/// The exit code for a finished run: 0 when every host (and the GitLab phase) is fine, else 1
/// (after the table).
pub fn outcome(report: &RunReport) -> anyhow::Result<ExitCode> {
    let failed = report.failed_hosts();
    if let (0, Some(gitlab)) = (failed, &report.gitlab)
        && gitlab.is_failure()
    {
        anyhow::bail!(
            "the GitLab phase {}: {}",
            if gitlab.status == Status::Skipped {
                "was skipped"
            } else {
                "failed"
            },
            gitlab.reason.as_deref().unwrap_or("see the GitLab table")
        );
    }
    if let (0, Some(reason)) = (failed, &report.kubeconfig_error) {
        anyhow::bail!("the kubeconfig was not merged: {reason}");
    }
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::HostsFailed {
            failed,
            total: report.hosts.len(),
        }
        .into())
    }
}

/// Ctrl-C, SIGTERM or SIGHUP cancels the fleet's commands; the run then reports what it got
/// (a second signal exits at once: `interrupt`).
pub async fn with_interrupt<T>(ctx: &SshContext, work: impl Future<Output = T>) -> T {
    super::interrupt::with_interrupt(&ctx.cancel, work).await
}

/// The inventory, the hosts to work on and how to reach them.
pub struct Prepared {
    pub inventory: Inventory,
    /// The selection in inventory order, plus the first server when `--limit` left it out.
    pub hosts: Vec<Host>,
    pub targets: Vec<ConnectOptions>,
    pub ctx: SshContext,
    pub fleet_settings: FleetSettings,
}

pub fn prepare(
    global: &GlobalArgs,
    path: &std::path::Path,
    need_sudo: bool,
) -> anyhow::Result<Prepared> {
    let inventory = inventory::load(path)?;
    let first = first_server(&inventory)
        .map_err(|e| Failure::Usage(e.to_string()))?
        .name
        .clone();
    let selected: Vec<String> = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?
        .into_iter()
        .map(|h| h.name.clone())
        .collect();
    let hosts: Vec<Host> = inventory
        .hosts
        .iter()
        .filter(|h| h.name == first || selected.contains(&h.name))
        .cloned()
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    let setup = super::exec::ssh_setup(&refs, need_sudo)?;
    let fleet_settings = FleetSettings {
        concurrency: global.concurrency.unwrap_or(inventory.concurrency).max(1),
        ..Default::default()
    };
    Ok(Prepared {
        targets: setup.targets,
        ctx: setup.ctx,
        inventory,
        hosts,
        fleet_settings,
    })
}

/// `$KUBECONFIG`'s first file, else `~/.kube/config` (where kubectl looks).
pub fn default_kubeconfig_path() -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find ~/.kube/config"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

// ---- progress ----------------------------------------------------------------------------

/// Live progress on stderr: with a terminal, indicatif bars (one per phase with host counts, a
/// spinner per host at work, failures printed as they happen); without one, plain lines for
/// per-host results. Nothing in `--quiet` or JSON mode.
pub struct ProgressView {
    mode: ViewMode,
}

enum ViewMode {
    Off,
    Lines,
    Bars(Bars),
}

struct Bars {
    multi: MultiProgress,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    phase: Option<ProgressBar>,
    hosts: Vec<(String, ProgressBar)>,
}

impl ProgressView {
    pub fn new(global: &GlobalArgs) -> Arc<ProgressView> {
        let mode = if global.quiet || global.output == OutputFormat::Json {
            ViewMode::Off
        } else if std::io::stderr().is_terminal() && global.verbose == 0 {
            ViewMode::Bars(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                state: Mutex::new(BarState::default()),
            })
        } else {
            ViewMode::Lines
        };
        Arc::new(ProgressView { mode })
    }

    pub fn finish(&self) {
        if let ViewMode::Bars(bars) = &self.mode {
            let mut state = bars.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(bar) = state.phase.take() {
                bar.finish_and_clear();
            }
            for (_, bar) in state.hosts.drain(..) {
                bar.finish_and_clear();
            }
            let _ = bars.multi.clear();
        }
    }
}

impl Observer for ProgressView {
    fn event(&self, event: &Progress<'_>) {
        match &self.mode {
            ViewMode::Off => {}
            ViewMode::Lines => lines_event(event),
            ViewMode::Bars(bars) => bars.event(event),
        }
    }
}

fn lines_event(event: &Progress<'_>) {
    match event {
        Progress::PhaseStart { phase, hosts } if *hosts > 0 => {
            eprintln!(
                "-- {phase} ({hosts} host{})",
                if *hosts == 1 { "" } else { "s" }
            );
        }
        Progress::PhaseStart { phase, .. } => eprintln!("-- {phase}"),
        Progress::HostDone {
            host, ok, detail, ..
        } if !detail.is_empty() => {
            if *ok {
                eprintln!("   {host}: {detail}");
            } else {
                eprintln!("   {host}: FAILED: {detail}");
            }
        }
        Progress::Message { text } => eprintln!("   {text}"),
        _ => {}
    }
}

impl Bars {
    fn event(&self, event: &Progress<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Progress::PhaseStart { phase, hosts } => {
                if let Some(old) = state.phase.take() {
                    old.finish_and_clear();
                }
                let bar = self.multi.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:14} [{bar:30}] {pos}/{len} {elapsed}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(phase.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                state.phase = Some(bar);
            }
            Progress::HostStart { phase, host } => {
                let spinner = self.multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message(format!("{host}: {phase}"));
                spinner.enable_steady_tick(Duration::from_millis(120));
                state.hosts.push((host.to_string(), spinner));
            }
            Progress::HostDone {
                host, ok, detail, ..
            } => {
                if let Some(i) = state.hosts.iter().position(|(h, _)| h == host) {
                    let (_, spinner) = state.hosts.remove(i);
                    spinner.finish_and_clear();
                    self.multi.remove(&spinner);
                }
                if let Some(bar) = &state.phase {
                    bar.inc(1);
                }
                if !ok {
                    let why = if detail.is_empty() { "failed" } else { detail };
                    let _ = self.multi.println(format!("✗ {host}: {why}"));
                }
            }
            Progress::PhaseEnd { .. } => {
                if let Some(bar) = state.phase.take() {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Progress::Message { text } => {
                let _ = self.multi.println(format!("  {text}"));
            }
        }
    }
}

/// For commands without live progress.
pub fn quiet() -> Arc<dyn Observer> {
    Arc::new(Quiet)
}

// ---- tables ------------------------------------------------------------------------------

/// The final report: a table per host, the node table, notes; or JSON.
pub fn print_report(global: &GlobalArgs, report: &RunReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    if let Some(version) = &report.version {
        writeln!(
            out,
            "cluster {}: k3s {version}{}",
            report.cluster,
            report
                .version_source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        )?;
    }
    let mut rows = vec![vec![
        "HOST".to_owned(),
        "ROLE".into(),
        "ARCH".into(),
        "VERSION".into(),
        if report.dry_run { "PLAN" } else { "RESULT" }.into(),
        "TIME".into(),
        "REASON".into(),
    ]];
    for host in &report.hosts {
        let reason = match host.status {
            Status::Failed | Status::Skipped => host.reason.clone().unwrap_or_default(),
            Status::Planned => host
                .decision
                .as_ref()
                .map(|d| d.why.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        rows.push(vec![
            host.host.clone(),
            host.role.to_owned(),
            host.arch.clone().unwrap_or_else(|| "-".into()),
            host.version.clone().unwrap_or_else(|| "-".into()),
            host.result.clone(),
            format!("{:.1}s", host.seconds),
            reason,
        ]);
    }
    write!(out, "{}", table(&rows))?;
    if !report.nodes.is_empty() {
        writeln!(out)?;
        let mut rows = vec![vec![
            "NODE".to_owned(),
            "STATUS".into(),
            "ROLES".into(),
            "VERSION".into(),
            "ARCH".into(),
            "PROBLEMS".into(),
        ]];
        for node in &report.nodes {
            rows.push(vec![
                node.name.clone(),
                node.ready.clone(),
                node.roles.clone(),
                node.version.clone(),
                node.arch.clone(),
                node.problems.join("; "),
            ]);
        }
        write!(out, "{}", table(&rows))?;
    }
    if let Some(gitlab) = &report.gitlab {
        writeln!(out)?;
        write!(out, "{}", gitlab_table(gitlab))?;
    }
    for message in &report.messages {
        writeln!(out, "note: {message}")?;
    }
    if let Some(kubeconfig) = &report.kubeconfig {
        writeln!(out, "kubeconfig: {kubeconfig}")?;
    }
    if let Some(dir) = &report.log_dir {
        writeln!(out, "logs: {dir}")?;
    }
    let count = |s: Status| report.hosts.iter().filter(|h| h.status == s).count();
    let summary = if report.dry_run {
        format!(
            "{} host(s): {} would change, {} nothing to do, {} refused or unreachable",
            report.hosts.len(),
            report
                .hosts
                .iter()
                .filter(|h| h.status == Status::Planned
                    && h.decision.as_ref().is_some_and(|d| d.action.changes()))
                .count(),
            report
                .hosts
                .iter()
                .filter(|h| h.status == Status::Planned
                    && h.decision.as_ref().is_none_or(|d| !d.action.changes()))
                .count(),
            count(Status::Failed) + count(Status::Skipped),
        )
    } else {
        format!(
            "{} host(s): {} changed, {} nothing to do, {} failed, {} skipped",
            report.hosts.len(),
            count(Status::Done),
            count(Status::Unchanged),
            count(Status::Failed),
            count(Status::Skipped)
        )
    };
    writeln!(out, "{summary}")?;
    Ok(())
}

/// The GitLab phase as a table (`GITLAB` rows: what in GitLab or on the first server, and what
/// became of it), then its outcome line.
pub fn gitlab_table(gitlab: &GitLabReport) -> String {
    let mut text = gitlab_rows(gitlab);
    let word = match gitlab.status {
        Status::Done => "changed",
        Status::Unchanged => "nothing to do",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Planned => "planned",
    };
    text.push_str(&format!(
        "gitlab: {word}{} ({} command(s) on the first server, {:.1}s)\n",
        gitlab
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        gitlab.commands,
        gitlab.seconds
    ));
    text
}

/// Only the rows of [`gitlab_table`] (empty when there are none).
pub fn gitlab_rows(gitlab: &GitLabReport) -> String {
    let mut rows = vec![
        ["GITLAB", "NAME", "RESULT", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for row in &gitlab.rows {
        rows.push(vec![
            row.item.clone(),
            row.name.clone(),
            row.result.clone(),
            row.detail.clone(),
        ]);
    }
    if gitlab.rows.is_empty() {
        String::new()
    } else {
        table(&rows)
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_table_shows_rows_then_the_outcome_with_its_reason() {
        let report = GitLabReport {
            status: Status::Failed,
            reason: Some("charts not deployed after 5m: gitlab-runner missing".into()),
            rows: vec![crate::phases::gitlab::GitLabRow {
                item: "chart".into(),
                name: "gitlab-runner".into(),
                result: "missing".into(),
                detail: String::new(),
            }],
            commands: 3,
            seconds: 1.25,
        };
        assert_eq!(
            gitlab_table(&report),
            "GITLAB  NAME           RESULT   DETAIL\n\
             chart   gitlab-runner  missing\n\
             gitlab: FAILED: charts not deployed after 5m: gitlab-runner missing \
             (3 command(s) on the first server, 1.2s)\n"
        );
        let skipped = GitLabReport::skipped("the cluster did not come up");
        assert_eq!(gitlab_rows(&skipped), "");
        assert!(skipped.is_failure());
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["HOST".into(), "RESULT".into(), "REASON".into()],
            vec!["lab-01".into(), "installed".into(), "".into()],
            vec!["x".into(), "failed".into(), "boom".into()],
        ];
        assert_eq!(
            table(&rows),
            "HOST    RESULT     REASON\nlab-01  installed\nx       failed     boom\n"
        );
    }
}
