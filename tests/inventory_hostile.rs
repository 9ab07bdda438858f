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
        (dir.path(), "a folder, not a regular file"),
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
