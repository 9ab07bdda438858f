//! The edgeops binary run as a user would start it, for the lab test crates: a private HOME
//! (kubeconfig, run logs, air-gap cache), nothing inherited that would point elsewhere
//! (KUBECONFIG, XDG dirs), stdin not a terminal unless a test asks for one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One user of edgeops: a private home shared by every run made through it.
pub struct Edgeops {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Default for Edgeops {
    fn default() -> Self {
        Self::new()
    }
}

impl Edgeops {
    pub fn new() -> Edgeops {
        Edgeops {
            home: tempfile::tempdir().expect("temp home"),
            env: Vec::new(),
        }
    }

    /// Also set `key=value` for every run (a token's environment variable, say).
    pub fn with_env(mut self, key: &str, value: &str) -> Edgeops {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `$XDG_CACHE_HOME` of the runs (the air-gap cache lives below it).
    pub fn cache(&self) -> PathBuf {
        self.home.path().join(".cache")
    }

    /// The kubeconfig `up` merges into.
    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join(".kube/config")
    }

    /// The run-log root (`$XDG_STATE_HOME/edgeops/runs` with the default state dir).
    fn runs_root(&self) -> PathBuf {
        self.home.path().join(".local/state/edgeops/runs")
    }

    /// `program args` with this user's environment (stdin null, output captured by default).
    fn command_for(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.cache())
            .env_remove("KUBECONFIG")
            .env_remove("XDG_STATE_HOME")
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// `edgeops args`, not yet started (for tests that signal or race a run).
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_for(env!("CARGO_BIN_EXE_edgeops"), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run edgeops")
    }

    /// Run and require success; stdout and stderr together.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "edgeops {args:?} failed:\n{all}");
        all
    }

    /// Like `run`, on a pseudo-terminal (util-linux `script`), typing `input`.
    pub fn run_on_tty(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let command = std::iter::once(env!("CARGO_BIN_EXE_edgeops"))
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = self
            .command_for("script", &["-qec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script (util-linux)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The run log folders so far.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for cluster in std::fs::read_dir(self.runs_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            for run in std::fs::read_dir(cluster.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                dirs.push(run.path());
            }
        }
        dirs
    }

    /// The one run folder not in `before`.
    pub fn new_run_dir(&self, before: &[PathBuf]) -> PathBuf {
        let new: Vec<PathBuf> = self
            .run_dirs()
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        assert_eq!(new.len(), 1, "expected one new run folder: {new:?}");
        new.into_iter().next().unwrap()
    }

    /// Every run log file's text, all runs.
    pub fn logs(&self) -> String {
        fn walk(dir: &Path, all: &mut String) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, all);
                } else {
                    all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        let mut all = String::new();
        walk(&self.runs_root(), &mut all);
        all
    }
}
