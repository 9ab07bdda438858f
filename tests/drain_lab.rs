//! Draining and replacing nodes against the lab (real sshd + systemd hosts) and the k3s
//! simulator, which now runs Deployments, DaemonSets, bare and emptyDir pods and
//! PodDisruptionBudgets and drains like kubectl (docs/K3S-SIM.md). Needs root and `scripts/lab`.
//!
//! One lab of three hosts, one test walking the story: workloads applied with kubectl; a
//! `reset --limit` blocked by a budget fails within its drain limit naming the pod, and the host
//! stays installed and schedulable; a bare pod and an emptyDir pod are refused without
//! `--force`/`--delete-emptydir-data`; with room under the budget the host is drained (its pods
//! move) and uninstalled; then a dead (stopped) agent is replaced by another board.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod support;

use support::Edgeops;

const SERVER: &str = "lab-01";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn inventory(lab: &support::Lab, dir: &Path, name: &str, hosts: &[&str]) -> PathBuf {
    inventory_ha(lab, dir, name, hosts, 1)
}

/// The first `servers` hosts are servers (embedded etcd when more than one).
fn inventory_ha(
    lab: &support::Lab,
    dir: &Path,
    name: &str,
    hosts: &[&str],
    servers: usize,
) -> PathBuf {
    lab.inventory("drain")
        .hosts(hosts)
        .servers(servers)
        .file_name(&format!("{name}.toml"))
        .write(dir)
}

/// `kubectl` on the server, as root.
fn kubectl(lab: &support::Lab, args: &str) -> String {
    lab.ssh_ok(SERVER, &format!("sudo k3s kubectl {args}"))
}

/// `(namespace/name, node)` of every pod.
fn pods(lab: &support::Lab) -> Vec<(String, String)> {
    let json = kubectl(lab, "get pods -A -o json");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap(),
                    p["metadata"]["name"].as_str().unwrap()
                ),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn installed(lab: &support::Lab, host: &str) -> bool {
    lab.ssh(host, "test -x /usr/local/bin/k3s").status.success()
}

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: node-agent}
  template:
    metadata:
      labels: {app: node-agent}
    spec:
      containers:
      - {name: agent, image: busybox}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: web, image: nginx}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: default
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
"#;

fn pinned(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bare
  namespace: default
spec:
  nodeName: {node}
  containers:
  - {{name: bare, image: busybox}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cache
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {{app: cache}}
  template:
    metadata:
      labels: {{app: cache}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      volumes:
      - {{name: scratch, emptyDir: {{}}}}
      containers:
      - {{name: cache, image: redis}}
"#
    )
}

fn apply(lab: &support::Lab, manifest: &str) -> String {
    lab.ssh_ok(
        SERVER,
        &format!("cat > /tmp/w.yaml <<'EOF'\n{manifest}EOF\nsudo k3s kubectl apply -f /tmp/w.yaml"),
    )
}

#[test]
fn drain_blocks_refuses_moves_and_a_dead_agent_is_replaced() {
    let lab = support::Lab::start(3);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(&lab, dir.path(), "drain", &[SERVER, "lab-02", "lab-03"]);
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "90s"]);

    // Workloads, as an operator applies them: a DaemonSet, two web replicas under a budget
    // that needs both (so no web pod may leave), and on lab-03 a bare pod and an emptyDir pod.
    let applied = apply(&lab, &WORKLOADS.replace("REPLICAS", "2"));
    assert!(
        applied.contains("poddisruptionbudget.policy/web created"),
        "{applied}"
    );
    apply(&lab, &pinned("lab-03"));
    wait_for(
        "every pod scheduled and the budget computed",
        Duration::from_secs(30),
        || {
            kubectl(&lab, "get pdb web -o jsonpath={.status.currentHealthy}").trim() == "2"
                && pods(&lab).iter().all(|(_, node)| !node.is_empty())
        },
    );
    let placed = pods(&lab);
    // The agent that runs a web pod: the budget keeps the drain from finishing there.
    let web_agent = placed
        .iter()
        .find(|(p, n)| p.starts_with("default/web-") && n != SERVER)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| panic!("no web pod on an agent: {placed:?}"));
    let web_pod = placed
        .iter()
        .find(|(p, n)| p.starts_with("default/web-") && *n == web_agent)
        .unwrap()
        .0
        .clone();

    // The plan shows the drain that would happen; --dry-run changes nothing.
    let dry = edgeops.run(&["reset", inv, "--limit", &web_agent, "--dry-run"]);
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains("drain (timeout 2m)"), "{out}");
    assert!(installed(&lab, &web_agent));

    // 1. A budget that blocks: fails within the drain limit, names the pod and the budget;
    //    the host keeps k3s and is schedulable again.
    let started = Instant::now();
    let blocked = edgeops.run(&[
        "reset",
        inv,
        "--limit",
        &web_agent,
        "--yes",
        "--drain-timeout",
        "6s",
    ]);
    let took = started.elapsed();
    let out = text(&blocked);
    eprintln!("blocked reset --limit {web_agent} took {took:?}:\n{out}");
    assert_eq!(blocked.status.code(), Some(1), "{out}");
    assert!(out.contains("drain timed out after 6s"), "{out}");
    assert!(
        out.contains(&web_pod) && out.contains("disruption budget"),
        "{out}"
    );
    assert!(out.contains("uncordoned again"), "{out}");
    assert!(took < Duration::from_secs(6 + 30), "took {took:?}");
    assert!(installed(&lab, &web_agent), "{web_agent} was uninstalled");
    assert_eq!(
        kubectl(
            &lab,
            &format!("get node {web_agent} -o jsonpath={{.spec.unschedulable}}")
        )
        .trim(),
        "",
        "{web_agent} left cordoned"
    );
    assert!(
        pods(&lab).iter().any(|(p, _)| *p == web_pod),
        "{web_pod} was evicted"
    );

    // 2. A bare pod and an emptyDir pod: refused without --force / --delete-emptydir-data.
    let refused = edgeops.run(&[
        "reset",
        inv,
        "--limit",
        "lab-03",
        "--yes",
        "--drain-timeout",
        "20s",
    ]);
    let out = text(&refused);
    if web_agent != "lab-03" {
        assert_eq!(refused.status.code(), Some(1), "{out}");
        assert!(
            out.contains("pod default/bare: no controller would recreate it (pass --force)"),
            "{out}"
        );
        assert!(
            out.contains("emptyDir data (pass --delete-emptydir-data)"),
            "{out}"
        );
        assert!(installed(&lab, "lab-03"));
    } else {
        // The budget already blocks lab-03 before the refusals count: it still fails.
        assert_eq!(refused.status.code(), Some(1), "{out}");
    }

    // 3. Room under the budget (three replicas, two needed): the web agent drains, its pods
    //    move to the other nodes, k3s is uninstalled and its Node deleted.
    apply(&lab, &WORKLOADS.replace("REPLICAS", "3"));
    wait_for(
        "the budget allows one disruption",
        Duration::from_secs(30),
        || kubectl(&lab, "get pdb web -o jsonpath={.status.disruptionsAllowed}").trim() == "1",
    );
    let mut args = vec![
        "reset",
        inv,
        "--limit",
        web_agent.as_str(),
        "--yes",
        "--drain-timeout",
        "40s",
    ];
    if web_agent == "lab-03" {
        args.extend(["--force", "--delete-emptydir-data"]);
    }
    let drained = edgeops.run(&args);
    let out = text(&drained);
    eprintln!("drained reset --limit {web_agent}:\n{out}");
    assert!(drained.status.success(), "{out}");
    assert!(out.contains("drained"), "{out}");
    assert!(!installed(&lab, &web_agent), "{web_agent} still has k3s");
    wait_for(
        "three web pods Running elsewhere",
        Duration::from_secs(30),
        || {
            let now = pods(&lab);
            let web: Vec<&(String, String)> = now
                .iter()
                .filter(|(p, _)| p.starts_with("default/web-"))
                .collect();
            web.len() == 3 && web.iter().all(|(_, n)| !n.is_empty() && *n != web_agent)
        },
    );
    assert!(!pods(&lab).iter().any(|(_, n)| *n == web_agent));

    // 4. The other agent with --force and --delete-emptydir-data: the bare pod is deleted for
    //    good, the emptyDir pod evicted (its Deployment has nowhere to put it: Pending).
    if web_agent != "lab-03" {
        let forced = edgeops.run(&[
            "reset",
            inv,
            "--limit",
            "lab-03",
            "--yes",
            "--force",
            "--delete-emptydir-data",
        ]);
        // The budget (three web pods, two needed) lets one web pod leave lab-03 as well.
        let out = text(&forced);
        assert!(forced.status.success(), "{out}");
        assert!(!pods(&lab).iter().any(|(p, _)| p == "default/bare"));
    }

    // 5. Replacement: lab-02 back in, then dead (stopped); a live board is refused, the dead
    //    one is taken out and lab-03 brought in under its own name.
    let two = inventory(&lab, dir.path(), "two", &[SERVER, "lab-02"]);
    edgeops.ok(&["up", two.to_str().unwrap(), "--ready-timeout", "90s"]);
    let swapped = inventory(&lab, dir.path(), "swapped", &[SERVER, "lab-03"]);
    let swapped = swapped.to_str().unwrap();
    let live = edgeops.run(&["replace", swapped, "lab-02", "lab-03", "--yes"]);
    let out = text(&live);
    assert_eq!(live.status.code(), Some(2), "{out}");
    assert!(out.contains("node lab-02 is Ready"), "{out}");
    lab.stop("lab-02");
    wait_for("lab-02 Unknown", Duration::from_secs(40), || {
        kubectl(
            &lab,
            "get node lab-02 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
        )
        .trim()
            == "Unknown"
    });
    let plan = edgeops.run(&["replace", swapped, "lab-02", "lab-03", "--dry-run"]);
    let out = text(&plan);
    assert!(plan.status.success(), "{out}");
    assert!(out.contains("delete node lab-02 (Ready=Unknown)"), "{out}");
    assert!(out.contains("bring lab-03"), "{out}");
    let replaced = edgeops.run(&[
        "replace",
        swapped,
        "lab-02",
        "lab-03",
        "--yes",
        "--ready-timeout",
        "90s",
    ]);
    let out = text(&replaced);
    assert!(replaced.status.success(), "{out}");
    let nodes = kubectl(&lab, "get nodes -o name");
    assert_eq!(nodes.trim(), "node/lab-01\nnode/lab-03", "{out}");
    assert!(installed(&lab, "lab-03"));
}

/// A dead server of an HA cluster: its node and etcd member go (quorum checked: two of the
/// three members stay healthy), a new board joins as a server in its place.
#[test]
fn a_dead_server_is_replaced_keeping_quorum() {
    let lab = support::Lab::start(4);
    let dir = tempfile::tempdir().unwrap();
    let ha = inventory_ha(&lab, dir.path(), "ha", &[SERVER, "lab-02", "lab-03"], 3);
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", ha.to_str().unwrap(), "--ready-timeout", "90s"]);
    lab.stop("lab-03");
    wait_for("lab-03 Unknown", Duration::from_secs(40), || {
        kubectl(
            &lab,
            "get node lab-03 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
        )
        .trim()
            == "Unknown"
    });
    let swapped = inventory_ha(
        &lab,
        dir.path(),
        "swapped",
        &[SERVER, "lab-02", "lab-04"],
        3,
    );
    let swapped = swapped.to_str().unwrap();
    let plan = edgeops.run(&["replace", swapped, "lab-03", "lab-04", "--dry-run"]);
    let out = text(&plan);
    assert!(plan.status.success(), "{out}");
    assert!(out.contains("k3s removes its etcd member with it"), "{out}");
    assert!(
        out.contains("etcd after: 2 of 2 member(s) healthy"),
        "{out}"
    );
    let replaced = edgeops.run(&[
        "replace",
        swapped,
        "lab-03",
        "lab-04",
        "--yes",
        "--ready-timeout",
        "90s",
    ]);
    let out = text(&replaced);
    assert!(replaced.status.success(), "{out}");
    let nodes = kubectl(&lab, "get nodes -o name");
    assert_eq!(
        nodes.trim(),
        "node/lab-01\nnode/lab-02\nnode/lab-04",
        "{out}"
    );
    let roles = kubectl(&lab, "get node lab-04 -o jsonpath='{.metadata.labels}'");
    assert!(roles.contains("node-role.kubernetes.io/etcd"), "{roles}");
}
