//! Air-gapped `edgeops up` against the lab (scripts/lab) and the k3s simulator's mirror: hosts
//! whose route to the mirror is cut (`scripts/lab mirror-cut`) get the install script and the
//! binary of their architecture from the workstation cache, uploaded only when they lack them;
//! a corrupted cached binary, or a download that does not match its checksum, is refused before
//! anything is installed. Needs root.
//!
//! Both tests share one lab (id from `tests/support`) on disjoint hosts, each with its own
//! cluster and its own cache (a private HOME and XDG_CACHE_HOME).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

mod support;

use support::Edgeops;

const HOSTS: usize = 6;
const PINNED: &str = "v1.31.4+k3s1";
/// The corrupted-cache test's version (its downloads stay apart from PINNED's in the mirror log).
const OTHER: &str = "v1.31.3+k3s1";
/// The damaged-download test's version (the mirror corrupts only its arm64 binary).
const DAMAGED: &str = "v1.30.8+k3s1";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

static LAB: OnceLock<support::Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

/// The shared lab: hosts alternate x86_64 / aarch64, so a cluster needs two binaries. Torn down
/// at process exit (statics are never dropped).
fn lab() -> &'static support::Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = support::Lab::options(HOSTS)
            .arch("x86_64")
            .arch("aarch64")
            .start();
        for host in lab.hosts() {
            lab.mirror_cut(&host.name);
        }
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

/// An air-gapped inventory at `version`: the first host the server, the others agents.
fn inventory(
    lab: &support::Lab,
    dir: &Path,
    name: &str,
    hosts: &[&str],
    version: &str,
    cluster_extra: &str,
) -> PathBuf {
    lab.inventory(name)
        .hosts(hosts)
        .version(version)
        .airgap()
        .cluster(cluster_extra)
        .write(dir)
}

/// Mirror requests for release downloads of `PINNED` so far (from its request log).
fn downloads(lab: &support::Lab) -> Vec<String> {
    let log =
        std::fs::read_to_string(lab.state_dir().join("mirror/requests.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("/download/v1.31.4"))
        .map(str::to_owned)
        .collect()
}

/// `inode mtime` of the k3s binary and the uploaded installer on a host.
fn binary_stamp(lab: &support::Lab, host: &str) -> String {
    lab.ssh_ok(
        host,
        "sudo stat -c '%n %i %Y.%y' /usr/local/bin/k3s /usr/local/share/edgeops/k3s-install.sh",
    )
}

#[test]
fn airgapped_one_server_three_agents_from_the_workstation_cache() {
    let lab = lab();
    let hosts = ["lab-01", "lab-02", "lab-03", "lab-04"];
    // The cut is real: a host cannot open a connection to the mirror (EHOSTUNREACH).
    let probe = format!(
        "python3 -c 'import socket\ntry:\n socket.create_connection((\"{}\", 8080), 3); print(0)\nexcept OSError as e:\n print(e.errno)'",
        lab.bridge_address()
    );
    for host in hosts {
        assert_eq!(lab.ssh_ok(host, &probe), "113", "{host} reaches the mirror");
    }
    let dir = tempfile::tempdir().unwrap();
    // Image tarballs: one for every host, one only for the aarch64 hosts.
    std::fs::write(dir.path().join("app-images.tar"), "images for all\n").unwrap();
    std::fs::write(
        dir.path().join("k3s-airgap-images-arm64.tar.zst"),
        "arm64 images\n",
    )
    .unwrap();
    let inv = inventory(
        lab,
        dir.path(),
        "gap",
        &hosts,
        PINNED,
        "images = [\"app-images.tar\", \"k3s-airgap-images-arm64.tar.zst\"]",
    );
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();

    // `plan` says where the release would come from, and neither downloads nor touches a host.
    let planned = edgeops.run(&["plan", inv]);
    let plan_out = text(&planned);
    assert!(planned.status.success(), "plan failed:\n{plan_out}");
    assert!(
        plan_out.contains(&format!(
            "air-gapped: 4 host(s) would get k3s {PINNED} from the workstation"
        )),
        "{plan_out}"
    );
    assert!(plan_out.contains("amd64 to fetch"), "{plan_out}");
    assert!(plan_out.contains("arm64 to fetch"), "{plan_out}");
    assert!(
        downloads(lab).is_empty(),
        "plan downloaded: {:?}",
        downloads(lab)
    );
    assert!(
        !edgeops.cache().join("edgeops/k3s").join(PINNED).exists(),
        "plan filled the cache"
    );

    let first = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out1 = text(&first);
    assert!(first.status.success(), "air-gapped up failed:\n{out1}");
    assert!(out1.contains("files uploaded and verified"), "{out1}");

    // Every node Ready at the pinned version, each running the binary of its host's arch.
    let nodes: serde_json::Value =
        serde_json::from_str(&lab.ssh_ok("lab-01", "sudo k3s kubectl get nodes -o json")).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{nodes}");
    for node in items {
        let name = node["metadata"]["name"].as_str().unwrap();
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], PINNED);
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True", "{node}");
        let want = match lab.host(name).arch.as_deref() {
            Some("aarch64") => "arm64",
            _ => "amd64",
        };
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], want);
    }

    // Images: the common tarball everywhere, the arm64 one only on aarch64 hosts.
    for host in hosts {
        let listing = lab.ssh_ok(host, "sudo ls /var/lib/rancher/k3s/agent/images");
        let want = match lab.host(host).arch.as_deref() {
            Some("aarch64") => "app-images.tar\nk3s-airgap-images-arm64.tar.zst",
            _ => "app-images.tar",
        };
        assert_eq!(listing, want, "{host}");
        assert_eq!(
            lab.ssh_ok(
                host,
                "sudo cat /var/lib/rancher/k3s/agent/images/app-images.tar"
            ),
            "images for all"
        );
    }

    // The workstation fetched each asset once into the cache, verified.
    let cached = edgeops.cache().join("edgeops/k3s").join(PINNED);
    for file in [
        "install.sh",
        "k3s",
        "k3s-arm64",
        "sha256sum-amd64.txt",
        "sha256sum-arm64.txt",
    ] {
        assert!(cached.join(file).is_file(), "{file} not cached");
    }
    let fetched = downloads(lab);
    assert_eq!(fetched.len(), 4, "{fetched:#?}");
    let client = lab.bridge_address();
    assert!(
        fetched
            .iter()
            .all(|l| l.split_whitespace().nth(1) == Some(&client)),
        "only the workstation downloads: {fetched:#?}"
    );

    // Re-run: nothing to do, nothing uploaded or downloaded, binaries untouched.
    let before: Vec<String> = hosts.iter().map(|h| binary_stamp(lab, h)).collect();
    let second = edgeops.run(&["up", inv]);
    let out2 = text(&second);
    assert!(second.status.success(), "re-run failed:\n{out2}");
    let after: Vec<String> = hosts.iter().map(|h| binary_stamp(lab, h)).collect();
    assert_eq!(before, after, "a re-run replaced a binary");
    assert_eq!(downloads(lab).len(), 4);

    // A host that must re-run the installer (its recorded config hash is gone) is checked on
    // the host, and already holds the right files: nothing is uploaded, the binary stays.
    lab.ssh_ok("lab-04", "sudo rm /etc/rancher/k3s/edgeops-config.sha256");
    let third = edgeops.run(&["up", inv]);
    let out3 = text(&third);
    assert!(third.status.success(), "reconfigure run failed:\n{out3}");
    assert_eq!(binary_stamp(lab, "lab-04"), before[3]);
    assert!(
        !out3.contains("files uploaded"),
        "something was uploaded:\n{out3}"
    );
    assert!(out3.contains("artifacts already there"), "{out3}");
}

#[test]
fn a_corrupted_cached_binary_is_refused_and_nothing_is_installed() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let edgeops = Edgeops::new();
    // Fill the cache: a one-host cluster on lab-05 (x86_64), at another version than the other
    // test so the mirror's request log tells them apart; then wipe lab-05 again.
    let inv = inventory(lab, dir.path(), "fill", &["lab-05"], OTHER, "");
    let out = edgeops.run(&["up", inv.to_str().unwrap(), "--ready-timeout", "90s"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.ssh_ok(
        "lab-05",
        "sudo sh -c '/usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1; rm -rf /usr/local/share/edgeops'",
    );

    // Flip bytes of the cached amd64 binary.
    let binary = edgeops.cache().join("edgeops/k3s").join(OTHER).join("k3s");
    let mut bytes = std::fs::read(&binary).unwrap();
    let expected = sha256_hex(&bytes);
    for b in bytes.iter_mut().skip(100).take(8) {
        *b ^= 0xff;
    }
    std::fs::write(&binary, &bytes).unwrap();
    let actual = sha256_hex(&bytes);

    let inv = inventory(lab, dir.path(), "bad", &["lab-05", "lab-06"], OTHER, "");
    let refused = edgeops.run(&["up", inv.to_str().unwrap()]);
    let out = text(&refused);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a corrupted cache was used:\n{out}"
    );
    assert!(
        out.contains(&format!("{}: sha256 does not match", binary.display())),
        "{out}"
    );
    assert!(out.contains(&format!("expected {expected}")), "{out}");
    assert!(out.contains(&format!("got {actual}")), "{out}");
    // Refused, not silently replaced, and nothing reached a host.
    assert_eq!(std::fs::read(&binary).unwrap(), bytes);
    for host in ["lab-05", "lab-06"] {
        let out = lab.ssh(
            host,
            "test -e /usr/local/bin/k3s || test -e /etc/systemd/system/k3s.service || \
             test -e /etc/systemd/system/k3s-agent.service || test -e /usr/local/share/edgeops",
        );
        assert!(!out.status.success(), "{host} got something installed");
    }
}

#[test]
fn a_download_that_does_not_match_its_checksum_is_discarded() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let edgeops = Edgeops::new();
    // The mirror serves this version's arm64 binary with extra bytes (lab-06 is aarch64).
    std::fs::write(
        lab.state_dir().join("mirror/corrupt"),
        format!("{DAMAGED}/k3s-arm64\n"),
    )
    .unwrap();
    let inv = inventory(lab, dir.path(), "damaged", &["lab-06"], DAMAGED, "");
    let refused = edgeops.run(&["up", inv.to_str().unwrap()]);
    let out = text(&refused);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a damaged download was used:\n{out}"
    );
    assert!(
        out.contains("/download/v1.30.8%2Bk3s1/k3s-arm64: sha256 does not match"),
        "{out}"
    );
    // Nothing of it is kept in the cache, and the host got nothing.
    let cached = edgeops.cache().join("edgeops/k3s").join(DAMAGED);
    assert!(cached.join("sha256sum-arm64.txt").is_file());
    let leftovers: Vec<String> = std::fs::read_dir(&cached)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("k3s-arm64"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let out = lab.ssh(
        "lab-06",
        "test -e /usr/local/bin/k3s || test -e /usr/local/share/edgeops",
    );
    assert!(!out.status.success(), "lab-06 got something installed");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
