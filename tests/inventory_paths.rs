//! Every path in an inventory is resolved against the inventory's folder once, at load: `check`
//! and `render` agree whether the inventory is named by a relative or an absolute path, and whether
//! `templates_dir`, `token_file`, `identity_files`, `known_hosts` and `artifacts_dir` are written
//! relative or absolute. (`plan` with the same layouts runs against lab hosts in
//! tests/fault_matrix_lab.rs.)

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::cargo_bin_cmd;

const OVERRIDE_MARKER: &str = "# rendered from the site's template override";

/// A site folder `WORK/site` holding an inventory, its token, key, known_hosts, artifacts and a
/// template override; `absolute` picks how the inventory names them.
struct Site {
    work: tempfile::TempDir,
}

impl Site {
    fn new(absolute: bool) -> Site {
        let work = tempfile::tempdir().unwrap();
        let site = work.path().join("site");
        std::fs::create_dir_all(site.join("tpl/k3s")).unwrap();
        std::fs::create_dir_all(site.join("keys")).unwrap();
        std::fs::create_dir_all(site.join("artifacts")).unwrap();
        let builtin = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/k3s/config.yaml.j2"),
        )
        .unwrap();
        std::fs::write(
            site.join("tpl/k3s/config.yaml.j2"),
            format!("{OVERRIDE_MARKER}\n{builtin}"),
        )
        .unwrap();
        std::fs::write(site.join("token"), "site-token-from-a-file\n").unwrap();
        let keygen = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "site", "-f"])
            .arg(site.join("keys/id"))
            .status()
            .expect("ssh-keygen");
        assert!(keygen.success());
        let public = std::fs::read_to_string(site.join("keys/id.pub")).unwrap();
        let key_part = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(site.join("known_hosts"), format!("10.9.9.1 {key_part}\n")).unwrap();
        let place = |relative: &str| -> String {
            if absolute {
                site.join(relative).display().to_string()
            } else {
                relative.to_string()
            }
        };
        let inventory = format!(
            "[cluster]\nname = \"paths\"\nversion = \"v1.31.4+k3s1\"\n\
             token_file = \"{token}\"\nartifacts_dir = \"{artifacts}\"\n\n\
             [ssh]\nuser = \"pi\"\nidentity_files = [\"{key}\"]\nknown_hosts = \"{kh}\"\n\n\
             [[hosts]]\nname = \"s1\"\naddress = \"10.9.9.1\"\nrole = \"server\"\n\n\
             [gitlab]\nurl = \"https://gitlab.example.com\"\nproject = \"infra/paths\"\n\
             token_env = \"PATHS_GITLAB_TOKEN\"\ntemplates_dir = \"{tpl}\"\n",
            token = place("token"),
            artifacts = place("artifacts"),
            key = place("keys/id"),
            kh = place("known_hosts"),
            tpl = place("tpl"),
        );
        std::fs::write(site.join("inv.toml"), inventory).unwrap();
        Site { work }
    }

    fn inventory_arg(&self, absolute: bool) -> PathBuf {
        if absolute {
            self.work.path().join("site/inv.toml")
        } else {
            PathBuf::from("site/inv.toml")
        }
    }

    fn edgeops(&self, args: &[&std::ffi::OsStr]) -> Output {
        cargo_bin_cmd!("edgeops")
            .current_dir(self.work.path())
            .env("HOME", self.work.path())
            .env_remove("GITLAB_TOKEN")
            .env_remove("K3S_TOKEN")
            .args(args)
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_and_render_resolve_each_path_once_for_every_layout() {
    for paths_absolute in [false, true] {
        let site = Site::new(paths_absolute);
        for inventory_absolute in [false, true] {
            let case = format!(
                "paths in the inventory absolute: {paths_absolute}, inventory path absolute: {inventory_absolute}"
            );
            let inventory = site.inventory_arg(inventory_absolute);

            let check = site.edgeops(&["check".as_ref(), inventory.as_os_str()]);
            assert!(check.status.success(), "{case}: check:\n{}", text(&check));
            assert!(
                text(&check).contains(": valid"),
                "{case}:\n{}",
                text(&check)
            );

            let out = site
                .work
                .path()
                .join(format!("rendered-{paths_absolute}-{inventory_absolute}"));
            let render = site.edgeops(&[
                "render".as_ref(),
                inventory.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--with-secrets".as_ref(),
            ]);
            assert!(
                render.status.success(),
                "{case}: render:\n{}",
                text(&render)
            );
            let config = std::fs::read_to_string(out.join("k3s/s1/config.yaml"))
                .unwrap_or_else(|e| panic!("{case}: {e}:\n{}", text(&render)));
            assert!(
                config.starts_with(OVERRIDE_MARKER),
                "{case}: the override was not used:\n{config}"
            );
            let token = std::fs::read_to_string(out.join("k3s/token")).unwrap();
            assert_eq!(token.trim(), "site-token-from-a-file", "{case}");
        }
    }
}
