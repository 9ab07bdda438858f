//! `edgeops check` on hostile input: every error points at file:line:column (also invalid UTF-8
//! and nesting past the parser's limits), special and oversized files are refused without blocking,
//! and the files an inventory names are checked offline for being what they must be.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;

fn check(dir: &Path, inventory: &Path) -> Output {
    cargo_bin_cmd!("edgeops")
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("K3S_TOKEN")
        .env_remove("GITLAB_TOKEN")
        .env_remove("SSH_AUTH_SOCK")
        .arg("check")
        .arg(inventory)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `bytes` as `inv.toml` in `dir`, runs check, expects exit 2 and `--> inv.toml:LOC`.
fn rejected_at(bytes: &[u8], location: &str, fragments: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.toml"), bytes).unwrap();
    let out = check(dir.path(), Path::new("inv.toml"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("--> inv.toml:{location}\n")),
        "expected inv.toml:{location} in:\n{err}"
    );
    for fragment in fragments {
        assert!(err.contains(fragment), "expected {fragment:?} in:\n{err}");
    }
    err
}

const HEAD: &str = "[cluster]\nname = \"x\"\n\n[[hosts]]\nname = \"h\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n";

#[test]
fn invalid_utf8_is_located_at_its_first_bad_byte() {
    let mut bytes = HEAD.as_bytes().to_vec();
    bytes.extend_from_slice(b"labels = { \"a\" = \"\xc3\xa9\xe9t\xe9\" }\n");
    rejected_at(
        &bytes,
        "8:20",
        &["invalid UTF-8: byte 0xe9", "re-save the file as UTF-8"],
    );
}

#[test]
fn nesting_past_the_parsers_limits_is_located() {
    let dotted = format!("{HEAD}\n[{}]\n", vec!["deep"; 120].join("."));
    rejected_at(
        dotted.as_bytes(),
        "9:1",
        &["too many dotted parts", "nested too deeply"],
    );
    let key = format!("{HEAD}{} = 1\n", vec!["k"; 120].join("."));
    rejected_at(key.as_bytes(), "8:1", &["too many dotted parts"]);
    let arrays = format!("{HEAD}labels = {}{}\n", "[".repeat(200), "]".repeat(200));
    rejected_at(arrays.as_bytes(), "8:90", &["recursion"]);
}

#[test]
fn errors_without_a_place_of_their_own_point_at_the_first_line() {
    rejected_at(
        b"[[hosts]]\nname = \"h\"\nrole = \"server\"\n",
        "1:1",
        &["missing `[cluster]` table"],
    );
}

#[test]
fn special_and_oversized_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, kind) in [
        (fifo.as_path(), "a FIFO (named pipe), not a regular file"),
        (
            Path::new("/dev/zero"),
            "a character device, not a regular file",
        ),
        // A folder names a fleet of inventories (its `*.toml` files); the FIFO is none.
        (dir.path(), "the folder holds no *.toml inventory"),
    ] {
        let out = check(dir.path(), path);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(kind), "{}", stderr(&out));
    }
    let big = dir.path().join("big.toml");
    let mut text = HEAD.to_string();
    while text.len() as u64 <= edgeops::inventory::MAX_INVENTORY_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, text).unwrap();
    let out = check(dir.path(), &big);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than the 4 MiB an inventory may be"),
        "{}",
        stderr(&out)
    );
}

/// A folder with an inventory whose `[ssh]` and `[gitlab]` lines are `ssh_extra` and
/// `gitlab_extra`; keys made with ssh-keygen on request.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(ssh_extra: &str, gitlab_extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let gitlab = if gitlab_extra.is_empty() {
            String::new()
        } else {
            format!(
                "\n[gitlab]\nurl = \"https://gitlab.example.com\"\nproject = \"a/b\"\n{gitlab_extra}\n"
            )
        };
        std::fs::write(
            dir.path().join("inv.toml"),
            format!("{HEAD}\n[ssh]\nuser = \"pi\"\n{ssh_extra}\n{gitlab}"),
        )
        .unwrap();
        Site { dir }
    }

    fn keygen(&self, name: &str, passphrase: &str) {
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-C", "t", "-N", passphrase, "-f"])
            .arg(self.dir.path().join(name))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn check(&self) -> Output {
        check(self.dir.path(), Path::new("inv.toml"))
    }
}

fn assert_rejected(out: &Output, location: &str, fragment: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("--> inv.toml:{location}")),
        "expected inv.toml:{location}:\n{err}"
    );
    assert!(err.contains(fragment), "expected {fragment:?}:\n{err}");
}

#[test]
fn identity_files_must_be_private_keys_and_protected_ones_say_so() {
    let site = Site::new("identity_files = [\"id\"]", "");
    site.write("id", "this is not a key\n");
    assert_rejected(
        &site.check(),
        "11:19",
        "identity file `./id` is not a private key edgeops can use",
    );
    site.keygen("key", "");
    std::fs::rename(site.dir.path().join("key.pub"), site.dir.path().join("id")).unwrap();
    assert_rejected(&site.check(), "11:19", "is a public key, not a private key");
    std::fs::remove_file(site.dir.path().join("id")).unwrap();
    site.keygen("id", "a passphrase");
    let out = site.check();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: identity file ./id is passphrase-protected: its passphrase is asked on the terminal"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn known_hosts_must_parse_and_bad_lines_are_numbered() {
    let site = Site::new("known_hosts = \"kh\"", "");
    site.keygen("key", "");
    let public = std::fs::read_to_string(site.dir.path().join("key.pub")).unwrap();
    let entry: Vec<&str> = public.split_whitespace().take(2).collect();
    site.write(
        "kh",
        &format!(
            "# ours\n10.0.0.1 {}\nnot an entry\n10.0.0.2 ssh-ed25519 @@@\n",
            entry.join(" ")
        ),
    );
    assert_rejected(
        &site.check(),
        "11:15",
        "known_hosts `./kh`: lines 3, 4 are not a known_hosts entry",
    );
    std::fs::remove_file(site.dir.path().join("kh")).unwrap();
    std::fs::create_dir(site.dir.path().join("kh")).unwrap();
    assert_rejected(
        &site.check(),
        "11:15",
        "known_hosts `./kh` cannot be read: it is not a regular file",
    );
    let missing_folder = Site::new("known_hosts = \"no/such/folder/kh\"", "");
    assert_rejected(
        &missing_folder.check(),
        "11:15",
        "its folder does not exist",
    );
    // Absent in an existing folder is fine: accept-new creates it.
    let absent = Site::new("known_hosts = \"kh\"", "");
    assert!(
        absent.check().status.success(),
        "{}",
        stderr(&absent.check())
    );
}

#[test]
fn template_overrides_stay_beside_the_inventory_and_must_render() {
    // `..` is the temporary folder's parent: it exists, and it is outside.
    let escaping = Site::new("", "token_env = \"T\"\ntemplates_dir = \"..\"");
    assert_rejected(
        &escaping.check(),
        "17:17",
        "templates_dir `..` leaves the inventory's folder",
    );

    let broken = Site::new("", "token_env = \"T\"\ntemplates_dir = \"tpl\"");
    broken.write(
        "tpl/k3s/config.yaml.j2",
        "node-name: {{ host.no_such_field }}\n",
    );
    let out = broken.check();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("templates_dir:") && err.contains("tpl/k3s/config.yaml.j2:1"),
        "{err}"
    );
    broken.write("tpl/k3s/config.yaml.j2", "{% if %}\n");
    let err = stderr(&broken.check());
    assert!(err.contains("tpl/k3s/config.yaml.j2:1"), "{err}");
    broken.write("tpl/k3s/confg.yaml.j2", "x: 1\n");
    std::fs::remove_file(broken.dir.path().join("tpl/k3s/config.yaml.j2")).unwrap();
    let out = broken.check();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("confg.yaml.j2 matches no built-in template"),
        "{}",
        stderr(&out)
    );
}
