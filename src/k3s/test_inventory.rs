//! Test fixtures: validated `Inventory` values built directly (no TOML), for the k3s and render
//! tests. Also compiled into tests/render_templates.rs via `#[path]`, which maps
//! `crate::inventory` to `edgeops::inventory`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::inventory::{
    Cluster, GitLab, Host, HostKeyPolicy, Inventory, Role, RunnerSettings, RunnerType,
    SecretSource, SshSettings, Sudo,
};

fn ssh() -> SshSettings {
    SshSettings {
        user: "pi".into(),
        port: 22,
        identity_files: vec![PathBuf::from("~/.ssh/id_ed25519")],
        use_agent: true,
        known_hosts: None,
        host_key_policy: HostKeyPolicy::Strict,
        jump: None,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(600),
        sudo: Sudo::Passwordless,
        passphrase_env: None,
        explicit: Default::default(),
    }
}

fn host(name: &str, address: &str, role: Role) -> Host {
    Host {
        name: name.into(),
        address: address.into(),
        role,
        groups: vec![],
        node_name: name.into(),
        labels: BTreeMap::new(),
        taints: vec![],
        extra_args: vec![],
        ssh: ssh(),
    }
}

pub fn server(name: &str, address: &str) -> Host {
    host(name, address, Role::Server)
}

pub fn agent(name: &str, address: &str) -> Host {
    host(name, address, Role::Agent)
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        channel: "stable".into(),
        version: None,
        token: SecretSource::Generate,
        api_endpoint: None,
        tls_san: vec![],
        server_args: vec![],
        agent_args: vec![],
        disable: vec![],
        install_url: "https://get.k3s.io".into(),
        channel_url: "https://update.k3s.io/v1-release/channels".into(),
        download_url: None,
        ha: false,
        airgap: false,
        artifacts_dir: None,
        images: Vec::new(),
        kubeconfig_mode: None,
        lock_expiry: crate::inventory::DEFAULT_LOCK_EXPIRY,
        join_timeout: crate::inventory::DEFAULT_JOIN_TIMEOUT,
        extras: Default::default(),
    }
}

/// Three Raspberry Pis: one server, two agents, GitLab.com with a group runner.
pub fn pi_inventory() -> Inventory {
    let mut cluster = cluster("pi-lab");
    cluster.token = SecretSource::Env("EDGEOPS_PI_LAB_TOKEN".into());
    cluster.tls_san = vec!["pi-lab.local".into()];
    cluster.disable = vec!["traefik".into()];
    cluster.kubeconfig_mode = Some("0644".into());

    let mut pi02 = agent("pi-02", "10.0.0.12");
    pi02.labels
        .insert("edgeops.dev/board".into(), "rpi4".into());
    let mut pi03 = agent("pi-03", "10.0.0.13");
    pi03.labels
        .insert("edgeops.dev/board".into(), "rpi5".into());
    pi03.labels
        .insert("edgeops.dev/camera".into(), "true".into());

    Inventory {
        path: PathBuf::from("inventory/pi-lab.toml"),
        cluster,
        concurrency: 16,
        ci: Default::default(),
        hosts: vec![server("pi-01", "10.0.0.11"), pi02, pi03],
        registries: None,
        gitlab: Some(GitLab {
            url: "https://gitlab.com".into(),
            project: "edge-team/pi-lab-deploy".into(),
            group: Some("edge-team".into()),
            agent_name: "pi-lab".into(),
            token: SecretSource::Env("GITLAB_TOKEN".into()),
            runner: RunnerSettings {
                enabled: true,
                runner_type: RunnerType::Group,
                tags: vec!["arm64".into(), "pi".into()],
                run_untagged: false,
                concurrent: 4,
                privileged: true,
            },
            templates_dir: None,
            kas_address: None,
        }),
    }
}

/// Three HA servers behind a VIP and two agents, self-managed GitLab with a project runner.
pub fn ha_inventory() -> Inventory {
    let mut cluster = cluster("edge-ha");
    cluster.version = Some("v1.31.4+k3s1".into());
    cluster.ha = true;
    cluster.api_endpoint = Some("k3s-vip.lab".into());
    cluster.token = SecretSource::File(PathBuf::from("secrets/edge-ha.token"));
    cluster.tls_san = vec!["k3s.edge.example.com".into()];
    cluster.disable = vec!["traefik".into(), "servicelb".into()];
    cluster.server_args = vec![
        "--etcd-snapshot-schedule-cron=0 */6 * * *".into(),
        "--node-taint=CriticalAddonsOnly=true:NoExecute".into(),
    ];
    cluster.agent_args = vec!["--kubelet-arg=max-pods=60".into()];
    cluster.download_url = Some("https://artifacts.edge.example.com/k3s/releases".into());

    let mut wrk2 = agent("wrk-2", "10.1.0.22");
    wrk2.node_name = "wrk-2.edge".into();
    wrk2.taints = vec!["dedicated=camera:NoSchedule".into()];
    wrk2.labels
        .insert("edgeops.dev/camera".into(), "true".into());
    wrk2.extra_args = vec!["--node-ip=10.1.0.22".into()];

    Inventory {
        path: PathBuf::from("inventory/edge-ha.toml"),
        cluster,
        concurrency: 16,
        ci: Default::default(),
        hosts: vec![
            server("srv-1", "10.1.0.11"),
            server("srv-2", "10.1.0.12"),
            server("srv-3", "10.1.0.13"),
            agent("wrk-1", "10.1.0.21"),
            wrk2,
        ],
        registries: None,
        gitlab: Some(GitLab {
            url: "https://gitlab.example.com".into(),
            project: "infra/edge-ha".into(),
            group: None,
            agent_name: "edge-ha".into(),
            token: SecretSource::File(PathBuf::from("secrets/gitlab.token")),
            runner: RunnerSettings {
                enabled: true,
                runner_type: RunnerType::Project,
                tags: vec!["edge".into()],
                run_untagged: true,
                concurrent: 2,
                privileged: false,
            },
            templates_dir: None,
            kas_address: None,
        }),
    }
}

/// Cluster `lab` as the orchestration tests use it: `servers` servers s1.. (s1 first; embedded
/// etcd when more than one) and `agents` agents a1.., on 10.0.0.1.. in that order, user `pi`.
pub fn lab_inventory(servers: usize, agents: usize) -> Inventory {
    let mut toml = format!(
        "[cluster]\nname = \"lab\"\nha = {}\n[ssh]\nuser = \"pi\"\n",
        servers > 1
    );
    let hosts = (1..=servers)
        .map(|i| (format!("s{i}"), "server"))
        .chain((1..=agents).map(|i| (format!("a{i}"), "agent")));
    for (n, (name, role)) in hosts.enumerate() {
        toml.push_str(&format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"10.0.0.{}\"\nrole = \"{role}\"\n",
            n + 1
        ));
    }
    crate::inventory::parse(&toml, std::path::Path::new("lab.toml")).unwrap()
}
