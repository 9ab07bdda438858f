//! Fleet runs: `up`, `plan`, `status` and `check` over several site inventories at once,
//! against one lab of 7 hosts split into three sites that share their SSH settings through an
//! included file: site a (1 server + 2 agents), site b (1 + 2) and site c (one server that is
//! powered off). Asserts on the hosts (k3s's node list), not only on the output.

use std::path::Path;
use std::process::Output;

mod support;

use support::Edgeops;

const PINNED: &str = "v1.31.4+k3s1";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn site(name: &str, mirror: &str, hosts: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "include = \"../common.toml\"\n\n[cluster]\nname = \"{name}\"\nversion = \"{PINNED}\"\n\
         install_url = \"{mirror}/install.sh\"\nchannel_url = \"{mirror}/v1-release/channels\"\n\
         download_url = \"{mirror}/k3s-io/k3s/releases\"\n"
    );
    for (host, address, role) in hosts {
        text.push_str(&format!(
            "\n[[hosts]]\nname = \"{host}\"\naddress = \"{address}\"\nrole = \"{role}\"\n"
        ));
    }
    text
}

/// Node name → Ready, as k3s on `server` lists them.
fn nodes(lab: &support::Lab, server: &str) -> Vec<(String, bool)> {
    let json = lab.ssh_ok(server, "sudo k3s kubectl get nodes -o json");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut nodes: Vec<(String, bool)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (n["metadata"]["name"].as_str().unwrap().to_owned(), ready)
        })
        .collect();
    nodes.sort();
    nodes
}

fn ready(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| ((*n).to_owned(), true)).collect()
}

#[test]
fn clusters_run_together_each_with_its_own_lock_and_one_dead_site_stops_no_other() {
    let lab = support::Lab::start(7);
    let h: Vec<(String, String)> = lab
        .hosts()
        .iter()
        .map(|h| (h.name.clone(), h.address.clone()))
        .collect();
    let mirror = format!("http://{}:8080", lab.bridge_address());
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir(repo.join("sites")).unwrap();
    std::fs::write(
        repo.join("common.toml"),
        format!(
            "# SSH settings every site shares\n[ssh]\nuser = \"pi\"\nidentity_files = [\"{}\"]\n\
             known_hosts = \"{}\"\nsudo = \"passwordless\"\n",
            lab.key_path().display(),
            lab.known_hosts_path().display()
        ),
    )
    .unwrap();
    let a = [
        ("a-01", h[0].1.as_str(), "server"),
        ("a-02", h[1].1.as_str(), "agent"),
        ("a-03", h[2].1.as_str(), "agent"),
    ];
    let b = [
        ("b-01", h[3].1.as_str(), "server"),
        ("b-02", h[4].1.as_str(), "agent"),
        ("b-03", h[5].1.as_str(), "agent"),
    ];
    let c = [("c-01", h[6].1.as_str(), "server")];
    std::fs::write(repo.join("sites/a.toml"), site("a", &mirror, &a)).unwrap();
    std::fs::write(repo.join("sites/b.toml"), site("b", &mirror, &b)).unwrap();
    std::fs::write(repo.join("sites/c.toml"), site("c", &mirror, &c)).unwrap();
    lab.stop(&h[6].0);
    let sites = repo.join("sites");
    let sites = sites.to_str().unwrap();
    let user = Edgeops::new();

    // check over the folder: every inventory valid (the include gives them their [ssh]).
    let out = user.run(&["check", sites]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("3 inventories: all valid"),
        "{}",
        text(&out)
    );

    // up over the folder, two hosts at work at once over all clusters: a and b come up, the
    // dead site c fails alone; exit 1; the JSON has every cluster's row and report.
    let out = user.run(&["up", sites, "--concurrency", "2", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fleet JSON: {e}\n{}", text(&out)));
    assert_eq!(doc["connection_budget"], 2);
    let rows: Vec<(String, String)> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_owned(),
                c["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("a", "ok"), ("b", "ok"), ("c", "failed")].map(|(c, r)| (c.to_owned(), r.to_owned()))
    );
    assert_eq!(doc["clusters"][0]["changed"], 3);
    let c_host = &doc["clusters"][2]["report"]["hosts"][0];
    assert!(
        c_host["reason"].as_str().unwrap().contains("unreachable"),
        "{c_host}"
    );
    assert_eq!(nodes(&lab, &h[0].0), ready(&["a-01", "a-02", "a-03"]));
    assert_eq!(nodes(&lab, &h[3].0), ready(&["b-01", "b-02", "b-03"]));
    // Each cluster got its own run log folder and kubeconfig context.
    let runs: Vec<String> = user
        .run_dirs()
        .iter()
        .map(|d| {
            d.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for cluster in ["a", "b", "c"] {
        assert!(runs.contains(&cluster.to_owned()), "run logs: {runs:?}");
    }
    let kubeconfig = std::fs::read_to_string(user.kubeconfig()).unwrap();
    assert!(kubeconfig.contains("name: a") && kubeconfig.contains("name: b"));

    // Each cluster keeps its own lock: b's is held by another run, so b fails naming the
    // holder while a, in the same fleet run, converges (nothing to do).
    lab.ssh_ok(
        &h[3].0,
        "echo \"$(date +%s) alice@ws pid 7 run 3f00\" | sudo tee /run/edgeops-up.lock >/dev/null",
    );
    let glob = format!("{}/[ab].toml", repo.join("sites").display());
    let out = user.run(&["up", &glob]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let summary: Vec<&str> = all
        .lines()
        .skip_while(|l| !l.starts_with("CLUSTER"))
        .collect();
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("a ") && l.contains(" ok ")),
        "{all}"
    );
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("b ") && l.contains("failed") && l.contains("alice@ws")),
        "{all}"
    );
    assert!(
        all.contains("3 host(s): 0 changed, 3 nothing to do"),
        "{all}"
    );
    assert!(all.contains("2 cluster(s): 1 ok, 1 failed"), "{all}");
    lab.ssh_ok(&h[3].0, "sudo rm /run/edgeops-up.lock");

    // status over two files: both clusters Ready, exit 0, a summary row each.
    let a_path = repo.join("sites/a.toml");
    let b_path = repo.join("sites/b.toml");
    let out = user.run(&["status", a_path.to_str().unwrap(), b_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 cluster(s): 2 ok, 0 failed"),
        "{}",
        text(&out)
    );

    // upgrade over the same two: a downgrade is refused per cluster (each fails alone, nothing
    // changed), then both roll to v1.32.0 together.
    let out = user.run(&[
        "upgrade",
        a_path.to_str().unwrap(),
        b_path.to_str().unwrap(),
        "--version",
        "v1.30.8+k3s1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("2 cluster(s): 0 ok, 2 failed"),
        "{}",
        text(&out)
    );
    let out = user.run(&["upgrade", &glob, "--version", "v1.32.0+k3s1", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, cluster) in ["a", "b"].iter().enumerate() {
        let row = &doc["clusters"][i];
        assert_eq!(row["cluster"], *cluster);
        assert_eq!(row["changed"], 3, "{row}");
        assert_eq!(row["report"]["target"], "v1.32.0+k3s1", "{row}");
    }
    for server in [&h[0].0, &h[3].0] {
        let json = lab.ssh_ok(server, "sudo k3s kubectl get nodes -o json");
        let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
        for node in nodes["items"].as_array().unwrap() {
            assert_eq!(
                node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0+k3s1",
                "{node}"
            );
        }
    }

    // One budget for the whole fleet: with 100 ms added each way on every host of a and b,
    // a host's connect + status is a fixed number of round trips. With `--concurrency 1`, both
    // clusters in one fleet run work on one host at a time over BOTH, so they take about one
    // cluster's time plus the other's time at work (measured: 1.5x-1.9x one cluster's time);
    // without the shared budget, per-cluster windows let them overlap fully (measured 1.00x).
    for (name, _) in &h[..6] {
        lab.delay(name, 100);
    }
    let timed = |inventories: &str| {
        let started = std::time::Instant::now();
        let out = user.run(&["status", inventories, "--concurrency", "1"]);
        assert!(out.status.success(), "{}", text(&out));
        started.elapsed().as_secs_f64()
    };
    let one = timed(a_path.to_str().unwrap());
    let both = timed(&glob);
    for (name, _) in &h[..6] {
        lab.undelay(name);
    }
    eprintln!("status with budget 1 on delayed hosts: site a alone {one:.2}s, a and b {both:.2}s");
    assert!(
        both > 1.25 * one,
        "budget 1 over both clusters: {both:.1}s, against {one:.1}s for one cluster"
    );

    // Bad input in one inventory: nothing is attempted anywhere (exit 2), the bad file named.
    std::fs::write(
        repo.join("sites/d.toml"),
        site("d", &mirror, &[("d-01", "10.9.9.9", "sever")]),
    )
    .unwrap();
    let before = user.run_dirs();
    let out = user.run(&["up", sites]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("d.toml:"), "{}", text(&out));
    assert!(text(&out).contains("no host was touched"), "{}", text(&out));
    assert_eq!(user.run_dirs(), before, "no run started");
    assert!(Path::new(&repo.join("sites/d.toml")).exists());
}
