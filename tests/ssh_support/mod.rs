//! Test support: real OpenSSH servers on loopback ports (one tempdir each: host key, config,
//! authorized_keys), client key generation, and a "frozen host" that accepts TCP but never speaks.
//! Needs root and `/usr/sbin/sshd`; without them the tests fail with the reason.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeops::ssh::{
    ConnectOptions, Credentials, HostKeyPolicy, KeyStore, KnownHosts, PassphraseSource, SshContext,
    SudoMode,
};

const SSHD: &str = "/usr/sbin/sshd";

fn require_prerequisites() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install openssh-server (apt-get install openssh-server)"
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests start sshd and log in as root: run them as root"
    );
    std::fs::create_dir_all("/run/sshd").expect("create sshd privilege separation dir");
}

/// Run a command, panicking with its stderr if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generate a key pair with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    run(&mut cmd);
    path
}

/// The SHA256 fingerprint of a public key file, as ssh-keygen prints it.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(pub_path));
    out.split_whitespace().nth(1).unwrap().to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One sshd on 127.0.0.1:port, with its own host key and authorized_keys.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Start an sshd that accepts the given public keys for root.
    pub fn start(authorized: &[&Path]) -> Sshd {
        require_prerequisites();
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path(), "host_ed25519", "ed25519", "");
        let mut keys = String::new();
        for key in authorized {
            keys.push_str(&std::fs::read_to_string(key.with_extension("pub")).unwrap());
        }
        std::fs::write(dir.path().join("authorized_keys"), keys).unwrap();
        let mut sshd = Sshd {
            port: free_port(),
            dir,
            child: None,
        };
        sshd.spawn();
        sshd
    }

    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.path().join("host_ed25519.pub")
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A known_hosts line for this server's current host key.
    pub fn known_hosts_line(&self) -> String {
        let pubkey = std::fs::read_to_string(self.host_key_pub()).unwrap();
        let mut fields = pubkey.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        )
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {d}/host_ed25519\n\
             PidFile none\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             MaxStartups 1000\n\
             AllowTcpForwarding yes\n\
             SetEnv SHLVL=1\n",
            port = self.port,
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Own process group: stop() ends the listener and every connection it forked.
            .process_group(0)
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the listener and every connection it serves (like a host going down). Connection
    /// processes call setsid(), so they are found as descendants, not by process group.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut doomed = vec![child.id()];
            let mut i = 0;
            while i < doomed.len() {
                doomed.extend(children_of(doomed[i]));
                i += 1;
            }
            for pid in doomed {
                // SAFETY: these are sshd processes this test started (and their children).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }

    /// Start again on the same port with the same host key (the host is back up).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Replace the host key (a reinstalled host, or an attacker) and restart.
    pub fn rotate_host_key(&mut self) {
        self.stop();
        std::fs::remove_file(self.dir.path().join("host_ed25519")).unwrap();
        std::fs::remove_file(self.host_key_pub()).unwrap();
        keygen(self.dir.path(), "host_ed25519", "ed25519", "");
        self.spawn();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts TCP connections and never sends a byte: a frozen host.
pub struct FrozenHost {
    pub port: u16,
    _listener: TcpListener,
}

impl FrozenHost {
    pub fn start() -> FrozenHost {
        // The kernel completes handshakes into the backlog; nobody ever reads or writes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        FrozenHost {
            port: listener.local_addr().unwrap().port(),
            _listener: listener,
        }
    }
}

/// A client key pair for root.
pub struct ClientKey {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn client_key(kind: &str, passphrase: &str) -> ClientKey {
    let dir = tempfile::tempdir().unwrap();
    let path = keygen(dir.path(), &format!("id_{kind}"), kind, passphrase);
    ClientKey { dir, path }
}

/// Context with a known_hosts file in `dir` holding `lines`, which is also the learn file.
pub fn context_with(dir: &Path, lines: &str) -> (SshContext, PathBuf) {
    let file = dir.join("known_hosts");
    std::fs::write(&file, lines).unwrap();
    let known = KnownHosts::load(std::slice::from_ref(&file), Some(file.clone())).unwrap();
    (SshContext::new(known), file)
}

pub fn credentials(key: &Path, passphrase_env: Option<&str>) -> Arc<Credentials> {
    let sources: Vec<PassphraseSource> = passphrase_env
        .map(|v| PassphraseSource::Env(v.to_string()))
        .into_iter()
        .collect();
    let identity = KeyStore::new().load(key, &sources).unwrap();
    Arc::new(Credentials {
        identities: vec![identity],
        use_agent: false,
        password: None,
    })
}

pub fn options(name: &str, port: u16, credentials: Arc<Credentials>) -> ConnectOptions {
    ConnectOptions {
        name: name.to_string(),
        address: "127.0.0.1".to_string(),
        port,
        user: "root".to_string(),
        credentials,
        host_key_policy: HostKeyPolicy::Strict,
        jump: None,
        proxy_command: None,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        sudo: SudoMode::None,
    }
}

/// PIDs of processes whose command line contains `marker` (our own test processes excluded).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

/// Wait (bounded) until no process carries `marker`; returns the ones left.
pub fn wait_until_gone(marker: &str, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_with(marker);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(parent) {
            children.push(pid);
        }
    }
    children
}
