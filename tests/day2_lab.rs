//! Day-2 settings against the lab (scripts/lab) and the k3s simulator: private registries
//! (`[registries]` → `/etc/rancher/k3s/registries.yaml`, written only when changed, 0600, one
//! restart per change, credentials never in output or logs), and the Raspberry Pi check after the
//! cgroup reboot (a Pi whose memory controller stays off is reported, k3s not installed on it,
//! the others go on), free-form k3s settings, and `edgeops bundle` (verified against the lab
//! mirror's checksums, a corrupted asset refused, then `up` air-gapped from the bundle). Needs root.
//!
//! The tests share one lab (id from `tests/support`) on disjoint hosts, each its own cluster.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

mod support;

use support::Edgeops;

const HOSTS: usize = 6;
const PINNED: &str = "v1.31.4+k3s1";
/// The registry password the tests hand edgeops through the environment.
const PASSWORD: &str = "reg-pass-7f3a9c1e55";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

static LAB: OnceLock<support::Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

fn lab() -> &'static support::Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        // lab-01 looks like a Raspberry Pi (aarch64, model, cmdline.txt without the flags).
        let lab = support::Lab::options(HOSTS).pi(1).start();
        // SAFETY: registers a plain `extern "C"` function; it only runs at process exit.
        unsafe { libc::atexit(teardown) };
        lab
    })
}

extern "C" fn teardown() {
    if let Some(lab) = LAB.get() {
        lab.down_at_exit();
    }
}

/// An inventory: the first host the server, the others agents, then `extra` tables.
fn inventory(lab: &support::Lab, dir: &Path, name: &str, hosts: &[&str], extra: &str) -> PathBuf {
    lab.inventory(name)
        .hosts(hosts)
        .version(PINNED)
        .tables(extra)
        .write(dir)
}

/// The table line of `host` in `up`/`plan` output.
fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{out}"))
}

/// When the k3s (or k3s-agent) service last entered `active`, and the registries files' inodes
/// and mtimes: what a write or a restart changes.
fn footprint(lab: &support::Lab, host: &str) -> String {
    lab.ssh_ok(
        host,
        "sudo sh -c 'stat -c \"%n %i %y\" /etc/rancher/k3s/registries.yaml \
         /etc/rancher/k3s/edgeops-registries/*/* 2>/dev/null; \
         systemctl show -p ActiveEnterTimestampMonotonic k3s k3s-agent 2>/dev/null'",
    )
}

fn registries(endpoint: &str, ca: &Path) -> String {
    format!(
        "\n[registries.mirrors.\"docker.io\"]\nendpoints = [\"{endpoint}\"]\n\
         [registries.mirrors.\"*\"]\nendpoints = [\"{endpoint}\"]\n\
         [registries.configs.\"registry.site:5000\"]\nusername = \"edge\"\n\
         password_env = \"EDGEOPS_TEST_REGISTRY_PASSWORD\"\nca_file = \"{}\"\n",
        ca.display()
    )
}

#[test]
fn registry_mirror_configured_then_changed_restarts_once() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-02", "lab-03"];
    let ca = dir.path().join("site-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let edgeops = Edgeops::new().with_env("EDGEOPS_TEST_REGISTRY_PASSWORD", PASSWORD);

    // A cluster without registries first.
    let plain = inventory(lab, dir.path(), "reg", &hosts, "");
    let plain = plain.to_str().unwrap();
    let up = edgeops.run(&["up", plain, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "{}", text(&up));

    // Registries added: plan says both hosts would be reconfigured, without the password.
    let first = inventory(
        lab,
        dir.path(),
        "reg",
        &hosts,
        &registries("https://registry.site:5000", &ca),
    );
    let first = first.to_str().unwrap();
    let plan = edgeops.run(&["plan", first]);
    let plan_out = text(&plan);
    assert!(plan.status.success(), "{plan_out}");
    for host in hosts {
        assert!(row(&plan_out, host).contains("reconfigure"), "{plan_out}");
    }
    assert!(plan_out.contains("registries.yaml"), "{plan_out}");
    let before: Vec<String> = hosts.iter().map(|h| footprint(lab, h)).collect();
    let up = edgeops.run(&["up", first, "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    for (host, before) in hosts.iter().zip(&before) {
        assert!(row(&out, host).contains("reconfigured"), "{out}");
        let yaml = lab.ssh_ok(host, "sudo cat /etc/rancher/k3s/registries.yaml");
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            parsed["mirrors"]["docker.io"]["endpoint"][0], "https://registry.site:5000",
            "{yaml}"
        );
        assert_eq!(
            parsed["configs"]["registry.site:5000"]["auth"]["password"],
            PASSWORD
        );
        let ca_remote = parsed["configs"]["registry.site:5000"]["tls"]["ca_file"]
            .as_str()
            .unwrap()
            .to_owned();
        let modes = lab.ssh_ok(
            host,
            &format!("sudo stat -c '%a %U' /etc/rancher/k3s/registries.yaml {ca_remote}"),
        );
        assert_eq!(modes.trim(), "600 root\n600 root", "{host}: modes");
        assert_ne!(&footprint(lab, host), before, "{host}: not restarted");
    }

    // Second run: nothing to do, nothing written, nothing restarted.
    let before: Vec<String> = hosts.iter().map(|h| footprint(lab, h)).collect();
    let again = edgeops.run(&["up", first]);
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    for host in hosts {
        assert!(row(&out, host).contains("nothing to do"), "{out}");
    }
    let after: Vec<String> = hosts.iter().map(|h| footprint(lab, h)).collect();
    assert_eq!(before, after, "a converged re-run wrote or restarted");

    // The mirror changed: one restart per host, the new endpoint in place.
    let runs_before = edgeops.run_dirs();
    let changed = inventory(
        lab,
        dir.path(),
        "reg",
        &hosts,
        &registries("https://mirror2.site:5443", &ca),
    );
    let up = edgeops.run(&["up", changed.to_str().unwrap(), "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    let run_dir = edgeops.new_run_dir(&runs_before);
    for (host, unit) in [("lab-02", "k3s"), ("lab-03", "k3s-agent")] {
        assert!(row(&out, host).contains("reconfigured"), "{out}");
        let yaml = lab.ssh_ok(host, "sudo cat /etc/rancher/k3s/registries.yaml");
        assert!(yaml.contains("https://mirror2.site:5443"), "{yaml}");
        let log = std::fs::read_to_string(run_dir.join(format!("{host}.log"))).unwrap();
        // Output lines only (the script text is logged too, inside `echo '...'`).
        let restarts = log
            .lines()
            .filter(|l| l.starts_with("edgeops:") && l.contains(&format!("restarting {unit}")))
            .count();
        assert_eq!(restarts, 1, "{host}: restarts in the run log:\n{log}");
        assert!(
            !log.contains(PASSWORD),
            "{host}: the password is in the run log"
        );
    }
    for output in [&plan_out, &out] {
        assert!(
            !output.contains(PASSWORD),
            "the password was printed:\n{output}"
        );
    }

    // render masks the password unless --with-secrets.
    let rendered = dir.path().join("rendered");
    edgeops.ok(&[
        "render",
        changed.to_str().unwrap(),
        "--out",
        rendered.to_str().unwrap(),
    ]);
    let yaml = std::fs::read_to_string(rendered.join("k3s/registries.yaml")).unwrap();
    assert!(!yaml.contains(PASSWORD), "{yaml}");
    assert!(
        yaml.contains("<from env EDGEOPS_TEST_REGISTRY_PASSWORD>"),
        "{yaml}"
    );
}

#[test]
fn pi_whose_memory_controller_stays_off_is_reported_and_skipped() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // A kernel that ignores the flags (as some Raspberry Pi 5 kernels do).
    let knob = lab.run_lab(&["pi-memory", "lab-01", "off"]);
    assert!(knob.status.success(), "{}", text(&knob));
    let boot = lab.boot_id("lab-01");
    let inv = inventory(lab, dir.path(), "pi", &["lab-04", "lab-01"], "");
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&up);
    assert_eq!(up.status.code(), Some(1), "{out}");
    assert!(row(&out, "lab-04").contains("installed"), "{out}");
    let pi = row(&out, "lab-01");
    assert!(pi.contains("failed"), "{out}");
    assert!(out.contains("memory controller is still off"), "{out}");
    assert!(out.contains("apt full-upgrade"), "{out}");
    // It was rebooted with the flags, then left without k3s.
    assert_ne!(lab.boot_id("lab-01"), boot, "lab-01 was not rebooted");
    let cmdline = lab.ssh_ok("lab-01", "cat /proc/cmdline");
    assert!(cmdline.contains("cgroup_enable=memory"), "{cmdline}");
    lab.ssh_ok(
        "lab-01",
        "test ! -e /usr/local/bin/k3s && ! systemctl cat k3s-agent >/dev/null 2>&1",
    );

    // plan and a second up report it again without another reboot.
    let boot = lab.boot_id("lab-01");
    let plan = edgeops.run(&["plan", inv]);
    let plan_out = text(&plan);
    assert!(row(&plan_out, "lab-01").contains("failed"), "{plan_out}");
    assert!(
        plan_out.contains("memory controller is still off"),
        "{plan_out}"
    );
    let again = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&again);
    assert_eq!(again.status.code(), Some(1), "{out}");
    assert!(row(&out, "lab-04").contains("nothing to do"), "{out}");
    assert!(out.contains("memory controller is still off"), "{out}");
    assert_eq!(lab.boot_id("lab-01"), boot, "lab-01 was rebooted again");
}

#[test]
fn k3s_config_manifests_service_env_and_cluster_templates_reach_the_host() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site-config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: site\n  namespace: default\ndata:\n  site: edge\n",
    )
    .unwrap();
    let tpl = dir.path().join("tpl/k3s");
    std::fs::create_dir_all(&tpl).unwrap();
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/k3s/config.yaml.j2"),
    )
    .unwrap();
    std::fs::write(
        tpl.join("config.yaml.j2"),
        format!("# site template\n{builtin}"),
    )
    .unwrap();
    let inv = inventory(lab, dir.path(), "extras", &["lab-05"], "");
    let text_before = std::fs::read_to_string(&inv).unwrap();
    let with_extras = text_before.replacen(
        "[ssh]",
        "manifests = [\"site-config.yaml\"]\ntemplates_dir = \"tpl\"\n\
         forwarding_sysctls = true\nuser_kubeconfig = true\n\
         service_env = { HTTP_PROXY = \"http://proxy.site:3128\", NO_PROXY = \"10.0.0.0/8,127.0.0.1\" }\n\
         [cluster.k3s_config]\ncluster-cidr = \"10.52.0.0/16\"\nkubelet-arg = [\"max-pods=60\"]\n[ssh]",
        1,
    );
    std::fs::write(&inv, with_extras).unwrap();
    let inv = inv.to_str().unwrap();
    // A fresh network namespace forwards nothing: the drop-in must turn it on.
    assert_eq!(
        lab.ssh_ok("lab-05", "cat /proc/sys/net/ipv4/ip_forward"),
        "0"
    );
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    let config = lab.ssh_ok("lab-05", "sudo cat /etc/rancher/k3s/config.yaml");
    assert!(config.starts_with("# site template"), "{config}");
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
    assert_eq!(parsed["cluster-cidr"], "10.52.0.0/16", "{config}");
    assert_eq!(parsed["kubelet-arg"][0], "max-pods=60", "{config}");
    let env = lab.ssh_ok("lab-05", "sudo cat /etc/systemd/system/k3s.service.env");
    // The real installer writes proxy lines unquoted, the simulator quotes: accept both.
    let unquoted = env.replace('\'', "");
    assert!(
        unquoted.contains("HTTP_PROXY=http://proxy.site:3128"),
        "{env}"
    );
    assert!(unquoted.contains("NO_PROXY=10.0.0.0/8,127.0.0.1"), "{env}");
    let manifest = lab.ssh_ok(
        "lab-05",
        "sudo stat -c '%a' /var/lib/rancher/k3s/server/manifests/site-config.yaml && \
         sudo cat /var/lib/rancher/k3s/server/manifests/site-config.yaml",
    );
    assert!(manifest.starts_with("600\n"), "{manifest}");
    assert!(manifest.contains("name: site"), "{manifest}");
    let sysctl = lab.ssh_ok(
        "lab-05",
        "sudo stat -c '%a' /etc/sysctl.d/90-edgeops-k3s.conf && cat /proc/sys/net/ipv4/ip_forward",
    );
    assert_eq!(sysctl, "600\n1", "sysctl drop-in mode and forwarding");
    let kubeconfig = lab.ssh_ok(
        "lab-05",
        "stat -c '%a %U' ~/.kube/config && grep 'server:' ~/.kube/config",
    );
    assert!(
        kubeconfig.starts_with(&format!("600 {}\n", lab.hosts()[0].user)),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("https://127.0.0.1:6443"),
        "{kubeconfig}"
    );
    lab.ssh_ok("lab-05", "kubectl --kubeconfig ~/.kube/config get nodes >/dev/null 2>&1 || k3s kubectl --kubeconfig ~/.kube/config get nodes");
    let again = edgeops.run(&["up", inv]);
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(row(&out, "lab-05").contains("nothing to do"), "{out}");
}

#[test]
fn bundle_is_verified_refuses_a_corrupted_asset_and_feeds_an_airgapped_up() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let mirror = format!("http://{}:8080", lab.bridge_address());
    let releases = format!("{mirror}/k3s-io/k3s/releases");
    let install = format!("{mirror}/install.sh");
    let edgeops = Edgeops::new();
    let bundle = dir.path().join("bundle");
    // Version, mirror URLs from the inventory; the architecture from its host (`uname -m`).
    let inv = inventory(lab, dir.path(), "offline", &["lab-06"], "");
    let made = edgeops.run(&[
        "bundle",
        "--out",
        bundle.to_str().unwrap(),
        "--inventory",
        inv.to_str().unwrap(),
    ]);
    let out = text(&made);
    assert!(made.status.success(), "{out}");
    assert!(out.contains(&format!("k3s {PINNED} for amd64,")), "{out}");
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "edgeops-bundle.sha256",
            "install.sh",
            "k3s",
            "k3s-airgap-images-amd64.tar.gz",
            "sha256sum-amd64.txt"
        ],
        "{out}"
    );
    // The manifest checks out with the real sha256sum.
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "edgeops-bundle.sha256"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout)
            .matches(": OK")
            .count(),
        4
    );

    // The same as one archive: a folder of the archive's name holding the same files.
    let tar = dir.path().join("k3s-bundle.tar");
    edgeops.ok(&[
        "bundle",
        "--out",
        tar.to_str().unwrap(),
        "--version",
        PINNED,
        "--arch",
        "amd64",
        "--download-url",
        &releases,
        "--install-url",
        &install,
    ]);
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", text(&untar));
    assert_eq!(
        std::fs::read(unpacked.join("k3s-bundle/edgeops-bundle.sha256")).unwrap(),
        std::fs::read(bundle.join("edgeops-bundle.sha256")).unwrap()
    );

    // A corrupted image tarball on the mirror: refused, nothing left behind.
    let corrupt = lab.state_dir().join("mirror/corrupt");
    std::fs::write(&corrupt, "v1.30.8+k3s1/k3s-airgap-images-amd64.tar.gz\n").unwrap();
    let bad = dir.path().join("bad");
    let refused = edgeops.run(&[
        "bundle",
        "--out",
        bad.to_str().unwrap(),
        "--version",
        "v1.30.8+k3s1",
        "--arch",
        "amd64",
        "--download-url",
        &releases,
        "--install-url",
        &install,
    ]);
    std::fs::remove_file(&corrupt).unwrap();
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("k3s-airgap-images-amd64.tar.gz"), "{out}");
    assert!(out.contains("sha256 does not match"), "{out}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !bad.exists() && left.iter().all(|n| !n.contains("partial")),
        "{left:?}"
    );

    // `up` on a host that cannot reach the mirror, from the bundle as it is.
    let cut = lab.run_lab(&["mirror-cut", "lab-06"]);
    assert!(cut.status.success(), "{}", text(&cut));
    let toml = std::fs::read_to_string(&inv).unwrap().replacen(
        "[ssh]",
        &format!("artifacts_dir = \"{}\"\n[ssh]", bundle.display()),
        1,
    );
    std::fs::write(&inv, toml).unwrap();
    let up = edgeops.run(&["up", inv.to_str().unwrap(), "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    assert!(row(&out, "lab-06").contains("installed"), "{out}");
    lab.ssh_ok(
        "lab-06",
        "test -s /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.gz",
    );
}
