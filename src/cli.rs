//! The command-line surface: clap commands and flags, nothing else. Commands live in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// From a rack of bare boards to a ready k3s cluster wired into GitLab, from one TOML inventory.
#[derive(Debug, Parser)]
#[command(name = "edgeops", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Only these hosts: comma-separated names, globs (`pi-0*`), roles (`role:agent` or
    /// `servers`/`agents`) or groups (`group:NAME` or `@NAME`); prefix `!` to exclude.
    #[arg(long, short = 'l', global = true, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// How many hosts to work on at once (default: the inventory's `[ssh] concurrency`).
    #[arg(long, short = 'c', global = true, value_name = "N", value_parser = concurrency_arg)]
    pub concurrency: Option<usize>,
    /// Output format for results.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// More detail (-v: per-host commands, -vv: SSH protocol).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors and the final summary.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    // --- ssh_config ---
    /// OpenSSH client configuration to read instead of ~/.ssh/config (like `ssh -F`).
    #[arg(short = 'F', long = "ssh-config", global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

impl GlobalArgs {
    /// Hosts worked on at once: `--concurrency`, else the inventory's `[ssh] concurrency`.
    pub fn hosts_at_once(&self, inventory: &crate::inventory::Inventory) -> usize {
        self.concurrency.unwrap_or(inventory.concurrency).max(1)
    }

    /// Whether a progress bar may be drawn: text output, not `--quiet`, stderr a terminal.
    pub fn draws_progress(&self) -> bool {
        use std::io::IsTerminal;
        self.output == OutputFormat::Text && !self.quiet && std::io::stderr().is_terminal()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take every host in the inventory to a Ready k3s cluster (idempotent).
    Up(UpArgs),
    /// Show what `up` would do on each host, from live facts; changes nothing.
    Plan(InventoryArg),
    /// Facts, k3s service and config state, node readiness, and GitLab charts; changes nothing.
    Status(InventoryArg),
    /// Uninstall k3s and edgeops's files from the hosts (agents first, then servers).
    Reset(ResetArgs),
    // --- backup and restore (etcd snapshots) ---
    /// Take an etcd snapshot on the first server and copy it here (sha256 in a manifest);
    /// list or prune snapshots.
    Backup(BackupArgs),
    /// Bring the cluster back from a snapshot taken by `backup` (asks first, as `reset` does).
    Restore(RestoreArgs),
    /// Swap a dead board: delete its node (quorum checked for a server), then `up` the new one.
    Replace(ReplaceArgs),
    /// Rolling k3s upgrade: servers one at a time, then agents in batches.
    // `--version` is the target here, not the program's version.
    #[command(disable_version_flag = true)]
    Upgrade(UpgradeArgs),
    /// Run a command on the selected hosts at once, like pdsh.
    Exec(ExecArgs),
    /// Fetch the cluster's kubeconfig, point it at the API endpoint, merge it into ~/.kube/config.
    Kubeconfig(KubeconfigArgs),
    /// Render the k3s and GitLab templates to a folder without touching hosts or GitLab.
    Render(RenderArgs),
    /// Show who holds the cluster lock on the first server and remove it after confirmation.
    Unlock(UnlockArgs),
    /// Validate an inventory offline and summarise it.
    Check(InventoryArg),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Write the `.gitlab-ci.yml` of a repository of site inventories: check on merge
    /// requests, plan for changed clusters, up per cluster on the default branch.
    Ci(CiArgs),
    // --- first contact with fresh boards (hostkeys, bootstrap) ---
    /// Scan the hosts' SSH host keys, print their fingerprints and record them in known_hosts.
    Hostkeys(HostkeysArgs),
    /// Log in once with a password: install the inventory's public key (and passwordless sudo).
    Bootstrap(BootstrapArgs),
    /// Fetch a k3s release (installer, binaries, checksums, air-gap images) into one verified
    /// folder for air-gapped sites (`artifacts_dir`).
    #[command(disable_version_flag = true)]
    Bundle(BundleArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BundleArgs {
    /// The folder to create (must not exist); a name ending in `.tar` makes one archive
    /// holding that folder instead.
    #[arg(long)]
    pub out: PathBuf,
    /// The k3s release, e.g. v1.31.4+k3s1 (default: the inventory's pinned `version`).
    #[arg(long)]
    pub version: Option<String>,
    /// Architectures: amd64, arm64, arm (comma-separated or repeated); default with
    /// --inventory: those the hosts report (`uname -m`, over SSH).
    #[arg(long, value_delimiter = ',')]
    pub arch: Vec<String>,
    /// Take version, install_url and download_url from this inventory's `[cluster]` (and the
    /// architectures from its hosts when --arch is not given).
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Release download base (GITHUB_URL); default the inventory's or GitHub's.
    #[arg(long)]
    pub download_url: Option<String>,
    /// Install script URL; default the inventory's or https://get.k3s.io.
    #[arg(long)]
    pub install_url: Option<String>,
    /// Leave out the air-gap image tarballs.
    #[arg(long)]
    pub no_images: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InventoryArg {
    /// The inventory file (TOML), or a folder or glob pattern of them (a fleet run).
    pub inventory: PathBuf,
    /// More inventories for a fleet run: files, folders of `*.toml` or glob patterns (a
    /// folder or pattern as the first argument is a fleet run too).
    #[arg(value_name = "MORE")]
    pub more: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// The inventory file (TOML), or a folder or glob pattern of them (a fleet run).
    pub inventory: PathBuf,
    /// More inventories for a fleet run: files, folders of `*.toml` or glob patterns (a
    /// folder or pattern as the first argument is a fleet run too). Every cluster keeps its
    /// own lock, phases and report; their hosts share one `--concurrency` budget.
    #[arg(value_name = "MORE")]
    pub more: Vec<PathBuf>,
    /// Decide and print what would be done; change nothing (same as `plan`).
    #[arg(long)]
    pub dry_run: bool,
    /// Report Raspberry Pis that need a reboot for cgroup flags instead of rebooting them.
    #[arg(long)]
    pub no_reboot: bool,
    /// Reboot Raspberry Pis one at a time instead of all at once.
    #[arg(long)]
    pub serial: bool,
    /// Issue new GitLab agent and runner tokens even if working ones are stored on the first
    /// server (edgeops' older agent tokens are revoked, the runner's token is reset).
    #[arg(long)]
    pub rotate_tokens: bool,
    /// Change the running cluster's join token to the inventory's with k3s's own rotation
    /// (`k3s token rotate`), then update every node's token file and restart the servers one at
    /// a time. Without it, a token that differs from the cluster's stops the run unchanged.
    #[arg(long)]
    pub rotate_join_token: bool,
    /// How long to wait for every node to be Ready (and, with `[gitlab]`, for the GitLab
    /// charts to report deployed).
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub ready_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the plan (what each host has, what each phase would do) and change nothing: the
    /// lock is taken and released, hosts are only surveyed. Needs no terminal and no --yes.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Also remove the cluster's GitLab side once the hosts are wiped: the runner edgeops
    /// created, the agent's tokens, the agent, and its config file in the repository. Needs a
    /// `[gitlab]` section and a whole-cluster reset (no --limit).
    #[arg(long)]
    pub gitlab: bool,
    /// Hosts leaving a cluster that stays (--limit) are cordoned and drained first; this skips
    /// that (e.g. a dead board whose pods are gone anyway).
    #[arg(long, visible_alias = "no-drain")]
    pub skip_drain: bool,
    /// How long `kubectl drain` may take per host leaving the cluster; the host is not reset
    /// (and is uncordoned again) when it runs out.
    #[arg(long, default_value = "2m", value_parser = duration_arg)]
    pub drain_timeout: std::time::Duration,
    /// Drain also deletes pods that no controller recreates (kubectl drain --force).
    #[arg(long)]
    pub force: bool,
    /// Drain also evicts pods with emptyDir volumes, whose data is lost (kubectl drain
    /// --delete-emptydir-data).
    #[arg(long)]
    pub delete_emptydir_data: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplaceArgs {
    /// The inventory file (TOML), listing the new board.
    pub inventory: PathBuf,
    /// The dead board's node name (it may be gone from the inventory already).
    pub old: String,
    /// The new board's inventory name (default: OLD, the same name at a new address).
    pub new: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the plan, then stop (nothing is changed).
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// How long the new board may take to be Ready (as `up --ready-timeout`).
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub ready_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Snapshot name prefix (k3s names the file NAME-NODE-UNIXTIME).
    #[arg(long, default_value = "on-demand")]
    pub name: String,
    /// Folder for the copies and their manifest.json [default: backups/CLUSTER next to the
    /// inventory].
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// List the snapshots here (with sha256 check) and on the first server; take none.
    #[arg(long, conflicts_with = "prune")]
    pub list: bool,
    /// After the snapshot, keep only the newest KEEP with this name prefix, here and on the
    /// first server.
    #[arg(long, value_name = "KEEP", value_parser = clap::value_parser!(u32).range(1..))]
    pub prune: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// A snapshot file fetched by `edgeops backup` (its folder's manifest.json holds its sha256).
    pub snapshot: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Verify the snapshot, connect, survey and show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Limit for the cluster reset and then for the first server's API.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub api_timeout: std::time::Duration,
    /// Limit per other server and per agent to be Ready again.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub ready_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// The inventory file (TOML), or a folder or glob pattern of them (a fleet run).
    pub inventory: PathBuf,
    /// More inventories for a fleet run (files, folders of `*.toml`, glob patterns): every
    /// cluster rolls to the same target at once, each with its own lock and order.
    #[arg(value_name = "MORE")]
    pub more: Vec<PathBuf>,
    /// Target k3s version (e.g. v1.31.4+k3s1).
    #[arg(long, conflicts_with = "channel")]
    pub version: Option<String>,
    /// Target channel, resolved once to a version (e.g. stable, v1.31).
    #[arg(long)]
    pub channel: Option<String>,
    /// Agents upgraded at once.
    #[arg(long, default_value_t = 5)]
    pub batch_size: usize,
    /// Cordon and drain each node before upgrading it.
    #[arg(long)]
    pub drain: bool,
    /// Allow going to an older version.
    #[arg(long)]
    pub force: bool,
    /// How long each node may take to be Ready at the new version.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub ready_timeout: std::time::Duration,
    /// How long `kubectl drain` may take per node (with --drain).
    #[arg(long, default_value = "2m", value_parser = duration_arg)]
    pub drain_timeout: std::time::Duration,
    /// Read facts and nodes, decide, and print the plan (per host: from -> to, servers in
    /// order, agent batches); change nothing (not even the lock).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Run the command with sudo (as configured in the inventory).
    #[arg(long)]
    pub sudo: bool,
    /// Group output per host at the end, folding identical outputs (like `clush -b`).
    #[arg(long, short = 'g')]
    pub group: bool,
    /// Per-host command timeout (default: the inventory's `command_timeout`).
    #[arg(long, value_parser = duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// The command to run (after `--`).
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct KubeconfigArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Kubeconfig to merge into (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub merge_into: Option<PathBuf>,
    /// Write the cluster's kubeconfig alone to this file instead of merging.
    #[arg(long, conflicts_with = "merge_into")]
    pub out: Option<PathBuf>,
    /// Context name (default: the cluster name).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Remove the lock without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Folder to write the rendered files into.
    #[arg(long)]
    pub out: PathBuf,
    /// Put real tokens into the output instead of placeholders.
    #[arg(long)]
    pub with_secrets: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `--timeout`, `--ready-timeout`, ...: the inventory's duration rules (more than zero, at most
/// a day), so a flag cannot do what the inventory refuses (or overflow a deadline).
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::inventory::formats::duration_text(text)
}

/// `--concurrency`: the inventory's range for `[ssh] concurrency`.
fn concurrency_arg(text: &str) -> Result<usize, String> {
    let range = crate::inventory::CONCURRENCY_RANGE;
    match text.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is out of range: how many hosts are worked on at once, {} to {}",
            range.start(),
            range.end()
        )),
    }
}

#[derive(Debug, Clone, Args)]
pub struct CiArgs {
    /// Site inventories: files, folders of `*.toml`, or glob patterns (`sites/**/*.toml`),
    /// inside the repository.
    #[arg(required = true, num_args = 1..)]
    pub inventories: Vec<String>,
    /// The repository's root folder (the jobs run there).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Where to write the pipeline, relative to `--repo`; `-` prints it.
    #[arg(long, default_value = ".gitlab-ci.yml")]
    pub out: PathBuf,
    /// `up` jobs on the default branch wait until someone starts them (a manual gate).
    #[arg(long)]
    pub manual: bool,
}

// --- first contact with fresh boards (hostkeys, bootstrap) ---

#[derive(Debug, Clone, Args)]
pub struct HostkeysArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Record the scanned keys without asking.
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub yes: bool,
    /// Record only keys whose fingerprints this file lists (collected when the boards were
    /// flashed): `HOST SHA256:...` lines, or known_hosts / ssh-keyscan lines.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub expect: Option<PathBuf>,
    /// Replace a recorded key that changed (the old line is removed). Never done without it.
    #[arg(long, conflicts_with = "dry_run")]
    pub replace_changed: bool,
    /// Only scan and print; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BootstrapArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Environment variable holding the login password of the inventory's user.
    #[arg(long, value_name = "VAR", default_value = "EDGEOPS_BOOTSTRAP_PASSWORD")]
    pub password_env: String,
    /// File holding the login password (first line), instead of the environment variable.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Public key to install (default: the `.pub` beside the inventory's first identity file).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Also install a sudoers drop-in giving the user passwordless sudo (checked with visudo).
    #[arg(long)]
    pub sudo_nopasswd: bool,
}
