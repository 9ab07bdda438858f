//! Every template rendered for a 3-Pi inventory and an HA inventory: insta snapshots of each
//! file, and each YAML parsed back with its expected keys (HelmChart valuesContent and the
//! runner's config.toml too).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use edgeops::commands::render::{Bundle, RenderOptions, render_bundle, write_bundle};
use edgeops::render::gitlab::ClusterFacts;
use serde_yaml_ng::Value;

/// `test_inventory.rs` imports `crate::inventory`; here that is the library's inventory module.
mod inventory {
    pub use edgeops::inventory::*;
}
#[path = "../src/k3s/test_inventory.rs"]
mod test_inventory;

use test_inventory::{ha_inventory, pi_inventory};

fn pi_bundle() -> Bundle {
    let options = RenderOptions {
        with_secrets: false,
        facts: ClusterFacts {
            node_arch: Some("arm64".into()),
        },
    };
    render_bundle(&pi_inventory(), &options).unwrap()
}

fn ha_bundle() -> Bundle {
    render_bundle(&ha_inventory(), &RenderOptions::default()).unwrap()
}

fn file<'a>(bundle: &'a Bundle, path: &str) -> &'a str {
    &bundle
        .files
        .iter()
        .find(|file| file.path == Path::new(path))
        .unwrap_or_else(|| panic!("no {path} in {:?}", paths(bundle)))
        .contents
}

fn paths(bundle: &Bundle) -> Vec<String> {
    bundle
        .files
        .iter()
        .map(|file| file.path.display().to_string())
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|err| panic!("not YAML ({err}):\n{text}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|item| item.as_str().unwrap())
        .collect()
}

/// One snapshot per file, named after the inventory and the file's path.
fn snapshot_all(prefix: &str, bundle: &Bundle) {
    for file in &bundle.files {
        let name = format!("{prefix}__{}", file.path.display()).replace(['/', '.'], "_");
        insta::assert_snapshot!(name, file.contents);
    }
}

#[test]
fn pi_inventory_snapshots() {
    let bundle = pi_bundle();
    assert_eq!(
        paths(&bundle),
        [
            "k3s/pi-01/config.yaml",
            "k3s/pi-01/install.env",
            "k3s/pi-01/install.sh",
            "k3s/pi-02/config.yaml",
            "k3s/pi-02/install.env",
            "k3s/pi-02/install.sh",
            "k3s/pi-03/config.yaml",
            "k3s/pi-03/install.env",
            "k3s/pi-03/install.sh",
            "k3s/token",
            "repo/.gitlab/agents/pi-lab/config.yaml",
            "values/gitlab-agent.yaml",
            "manifests/gitlab-agent-pi-lab.yaml",
            "values/gitlab-runner.yaml",
            "manifests/gitlab-runner.yaml",
        ]
    );
    snapshot_all("pi", &bundle);
}

#[test]
fn ha_inventory_snapshots() {
    let bundle = ha_bundle();
    snapshot_all("ha", &bundle);
}

#[test]
fn k3s_configs_parse_with_the_expected_keys() {
    let pi = pi_bundle();
    let server = yaml(file(&pi, "k3s/pi-01/config.yaml"));
    assert_eq!(server["node-name"], "pi-01");
    assert_eq!(server.get("cluster-init"), None, "single server: no etcd");
    assert_eq!(server.get("server"), None);
    assert_eq!(strings(&server["tls-san"]), ["10.0.0.11", "pi-lab.local"]);
    assert_eq!(strings(&server["disable"]), ["traefik"]);
    assert_eq!(server["write-kubeconfig-mode"], "0644");
    let agent = yaml(file(&pi, "k3s/pi-03/config.yaml"));
    assert_eq!(agent["server"], "https://10.0.0.11:6443");
    assert_eq!(
        strings(&agent["node-label"]),
        ["edgeops.dev/board=rpi5", "edgeops.dev/camera=true"]
    );
    for key in [
        "tls-san",
        "disable",
        "write-kubeconfig-mode",
        "token",
        "token-file",
    ] {
        assert_eq!(agent.get(key), None, "agents get no {key}");
    }

    let ha = ha_bundle();
    let first = yaml(file(&ha, "k3s/srv-1/config.yaml"));
    assert_eq!(first["cluster-init"], true);
    assert_eq!(
        strings(&first["tls-san"]),
        ["k3s-vip.lab", "10.1.0.11", "k3s.edge.example.com"]
    );
    assert_eq!(
        strings(&first["node-taint"]),
        ["CriticalAddonsOnly=true:NoExecute"]
    );
    assert_eq!(first["etcd-snapshot-schedule-cron"], "0 */6 * * *");
    let second = yaml(file(&ha, "k3s/srv-2/config.yaml"));
    assert_eq!(second.get("cluster-init"), None);
    assert_eq!(second["server"], "https://10.1.0.11:6443");
    let worker = yaml(file(&ha, "k3s/wrk-2/config.yaml"));
    assert_eq!(worker["node-name"], "wrk-2.edge");
    assert_eq!(worker["server"], "https://k3s-vip.lab:6443");
    assert_eq!(strings(&worker["kubelet-arg"]), ["max-pods=60"]);
    assert_eq!(strings(&worker["node-ip"]), ["10.1.0.22"]);
    assert_eq!(
        strings(&worker["node-taint"]),
        ["dedicated=camera:NoSchedule"]
    );
}

#[test]
fn install_env_pins_the_version_or_says_where_it_comes_from() {
    let ha = ha_bundle();
    let env = file(&ha, "k3s/wrk-1/install.env");
    assert!(env.contains("INSTALL_K3S_VERSION=v1.31.4+k3s1\n"), "{env}");
    assert!(env.contains("K3S_URL=https://k3s-vip.lab:6443\n"), "{env}");
    assert!(env.contains("GITHUB_URL=https://artifacts.edge.example.com/k3s/releases\n"));
    let pi = pi_bundle();
    let env = file(&pi, "k3s/pi-01/install.env");
    assert!(
        env.contains("INSTALL_K3S_VERSION='<k3s version from channel stable>'\n"),
        "{env}"
    );
    assert!(
        pi.notes
            .iter()
            .any(|note| note.contains("resolves channel stable"))
    );
}

#[test]
fn gitlab_files_parse_with_the_expected_keys() {
    let pi = pi_bundle();
    let agent_config = yaml(file(&pi, "repo/.gitlab/agents/pi-lab/config.yaml"));
    assert_eq!(
        agent_config["ci_access"]["projects"][0]["id"],
        "edge-team/pi-lab-deploy"
    );
    assert_eq!(agent_config["ci_access"]["groups"][0]["id"], "edge-team");
    assert_eq!(agent_config.get("user_access"), None);

    let agent_values = yaml(file(&pi, "values/gitlab-agent.yaml"));
    assert_eq!(agent_values["config"]["token"], "<gitlab-agent-token>");
    assert_eq!(agent_values["config"]["kasAddress"], "wss://kas.gitlab.com");

    let runner_values = yaml(file(&pi, "values/gitlab-runner.yaml"));
    assert_eq!(runner_values["gitlabUrl"], "https://gitlab.com");
    assert_eq!(runner_values["runnerToken"], "<gitlab-runner-token>");
    assert_eq!(runner_values.get("runnerRegistrationToken"), None);
    assert_eq!(runner_values["rbac"]["create"], true);
    assert_eq!(runner_values["concurrent"], 4);
    let config: toml::Table = toml::from_str(runner_values["runners"]["config"].as_str().unwrap())
        .expect("runners.config is TOML");
    let kubernetes = &config["runners"][0]["kubernetes"];
    assert_eq!(kubernetes["namespace"].as_str(), Some("gitlab-runner"));
    assert_eq!(kubernetes["privileged"].as_bool(), Some(true));
    assert_eq!(
        kubernetes["node_selector"]["kubernetes.io/arch"].as_str(),
        Some("arm64")
    );
    assert_eq!(
        kubernetes["volumes"]["empty_dir"][0]["mount_path"].as_str(),
        Some("/certs/client")
    );

    let ha = ha_bundle();
    let runner_values = yaml(file(&ha, "values/gitlab-runner.yaml"));
    let config: toml::Table =
        toml::from_str(runner_values["runners"]["config"].as_str().unwrap()).unwrap();
    let kubernetes = &config["runners"][0]["kubernetes"];
    assert_eq!(kubernetes["privileged"].as_bool(), Some(false));
    assert!(kubernetes.get("node_selector").is_none());
    assert!(kubernetes.get("volumes").is_none());
    let agent_values = yaml(file(&ha, "values/gitlab-agent.yaml"));
    assert_eq!(
        agent_values["config"]["kasAddress"],
        "wss://gitlab.example.com/-/kubernetes-agent/"
    );
}

#[test]
fn helmcharts_parse_and_carry_the_values_verbatim() {
    for bundle in [pi_bundle(), ha_bundle()] {
        let agent_manifest = bundle
            .files
            .iter()
            .find(|file| {
                file.path
                    .to_string_lossy()
                    .starts_with("manifests/gitlab-agent-")
            })
            .unwrap();
        for (manifest, values, chart, namespace_prefix) in [
            (
                agent_manifest.contents.as_str(),
                file(&bundle, "values/gitlab-agent.yaml"),
                "gitlab-agent",
                "gitlab-agent-",
            ),
            (
                file(&bundle, "manifests/gitlab-runner.yaml"),
                file(&bundle, "values/gitlab-runner.yaml"),
                "gitlab-runner",
                "gitlab-runner",
            ),
        ] {
            let chart_yaml = yaml(manifest);
            assert_eq!(chart_yaml["apiVersion"], "helm.cattle.io/v1");
            assert_eq!(chart_yaml["kind"], "HelmChart");
            assert_eq!(chart_yaml["metadata"]["namespace"], "kube-system");
            assert_eq!(chart_yaml["spec"]["repo"], "https://charts.gitlab.io");
            assert_eq!(chart_yaml["spec"]["chart"], chart);
            assert_eq!(chart_yaml["spec"]["createNamespace"], true);
            assert!(
                chart_yaml["spec"]["targetNamespace"]
                    .as_str()
                    .unwrap()
                    .starts_with(namespace_prefix)
            );
            let content = chart_yaml["spec"]["valuesContent"].as_str().unwrap();
            // The block scalar gives back the values file exactly, final newline included.
            assert_eq!(content, values);
            assert_eq!(yaml(content), yaml(values));
        }
    }
}

#[test]
fn with_secrets_writes_the_join_token_0600_and_placeholders_otherwise() {
    let out = tempfile::tempdir().unwrap();
    write_bundle(&pi_bundle(), out.path()).unwrap();
    let token_path = out.path().join("k3s/token");
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap(),
        "<k3s-join-token>\n"
    );

    // A file source: tests must not set environment variables while other threads read them.
    let secrets = tempfile::tempdir().unwrap();
    let token_source = secrets.path().join("join-token");
    let mut inventory = pi_inventory();
    inventory.cluster.token = inventory::SecretSource::File(token_source.clone());
    let with_secrets = RenderOptions {
        with_secrets: true,
        ..RenderOptions::default()
    };
    std::fs::write(&token_source, "K10pi-lab-not-a-real-token\n").unwrap();
    let err = render_bundle(&inventory, &with_secrets).unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!(
            "the join token from {} is invalid",
            token_source.display()
        )),
        "{err:#}"
    );
    std::fs::write(&token_source, "pi-lab-join-secret\n").unwrap();
    let bundle = render_bundle(&inventory, &with_secrets).unwrap();
    let token_file = bundle
        .files
        .iter()
        .find(|file| file.path == Path::new("k3s/token"))
        .unwrap();
    assert!(token_file.secret);
    assert!(!format!("{bundle:?}").contains("pi-lab-join-secret"));
    assert!(
        bundle
            .files
            .iter()
            .filter(|file| file.path != Path::new("k3s/token"))
            .all(|file| !file.contents.contains("pi-lab-join-secret")),
        "the token is only in k3s/token"
    );
    write_bundle(&bundle, out.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap(),
        "pi-lab-join-secret\n"
    );
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        bundle
            .notes
            .iter()
            .any(|note| note.contains("GitLab agent and runner tokens stay placeholders"))
    );
}

#[test]
fn a_templates_dir_overrides_single_templates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("gitlab")).unwrap();
    let override_path = dir.path().join("gitlab/runner-values.yaml.j2");
    std::fs::write(
        &override_path,
        "gitlabUrl: {{ gitlab_url | tojson }}\nrunnerToken: {{ runner_token | tojson }}\nconcurrent: {{ concurrent * 2 }}\n",
    )
    .unwrap();
    let typo = dir.path().join("gitlab/agent-value.yaml.j2");
    std::fs::write(&typo, "never used").unwrap();
    let mut inventory = ha_inventory();
    inventory.gitlab.as_mut().unwrap().templates_dir = Some(dir.path().to_owned());
    let bundle = render_bundle(&inventory, &RenderOptions::default()).unwrap();
    assert!(
        bundle.notes.contains(&format!(
            "{} matches no built-in template and is not used",
            typo.display()
        )),
        "{:?}",
        bundle.notes
    );
    let values = bundle
        .files
        .iter()
        .find(|file| file.path == Path::new("values/gitlab-runner.yaml"))
        .unwrap();
    assert_eq!(
        values.template.as_deref(),
        Some(override_path.to_str().unwrap())
    );
    assert_eq!(yaml(&values.contents)["concurrent"], 4);
    // The HelmChart wraps the overridden values; other templates stay built in.
    let manifest = yaml(file(&bundle, "manifests/gitlab-runner.yaml"));
    assert_eq!(
        yaml(manifest["spec"]["valuesContent"].as_str().unwrap())["concurrent"],
        4
    );
    let agent_values = bundle
        .files
        .iter()
        .find(|file| file.path == Path::new("values/gitlab-agent.yaml"))
        .unwrap();
    assert_eq!(
        agent_values.template.as_deref(),
        Some("templates/gitlab/agent-values.yaml.j2 (built-in)")
    );

    // A mistake in an override names the file and line.
    std::fs::write(
        &override_path,
        "gitlabUrl: {{ gitlab_url }}\ntags: {{ tag_list }}\n",
    )
    .unwrap();
    let err = render_bundle(&inventory, &RenderOptions::default()).unwrap_err();
    assert!(
        format!("{err:#}").starts_with(&format!("{}:2: undefined value", override_path.display())),
        "{err:#}"
    );
}
