//! SSH certificates against the lab's real sshd: a host with a CA-signed host certificate and
//! no known_hosts line of its own is accepted under strict through a `@cert-authority` line; a
//! user certificate, from a file or from ssh-agent, logs in where the plain key is not
//! authorized (TrustedUserCAKeys); a `@revoked` host key is refused even with a valid certificate.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{Edgeops, Lab};

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen").args(args).output().unwrap();
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", all(&out));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn host_and_user_certificates_and_a_revoked_host_key() {
    let lab = Lab::options(1).sshd_only().start();
    let address = lab.host("lab-01").address.clone();
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let ds = |name: &str| d(name).display().to_string();

    // One CA signs the host key (principal: the address) and a new user key (principal: pi).
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "lab-ca",
        "-f",
        &ds("ca"),
    ]);
    let host_pub = lab.ssh_ok("lab-01", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    std::fs::write(d("host.pub"), format!("{host_pub}\n")).unwrap();
    keygen(&[
        "-q",
        "-s",
        &ds("ca"),
        "-I",
        "lab-01",
        "-h",
        "-n",
        &address,
        "-V",
        "-5m:+1h",
        &ds("host.pub"),
    ]);
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &ds("user")]);
    keygen(&[
        "-q",
        "-s",
        &ds("ca"),
        "-I",
        "pi",
        "-n",
        "pi",
        "-V",
        "-5m:+1h",
        &ds("user.pub"),
    ]);
    lab.ssh_ok(
        "lab-01",
        &format!(
            "printf '%s\\n' '{cert}' | sudo tee /etc/ssh/ssh_host_ed25519_key-cert.pub >/dev/null && \
             printf '%s\\n' '{ca}' | sudo tee /etc/ssh/user_ca.pub >/dev/null && \
             printf '%s\\n' 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub' \
               'TrustedUserCAKeys /etc/ssh/user_ca.pub' | sudo tee -a /etc/ssh/sshd_config.d/lab.conf >/dev/null && \
             sudo kill -HUP 1",
            cert = read(&d("host-cert.pub")),
            ca = read(&d("ca.pub")),
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));

    // known_hosts: only the CA, for the lab's addresses.
    let ca_fields: Vec<String> = read(&d("ca.pub")).split(' ').map(str::to_string).collect();
    let net = address.rsplit_once('.').unwrap().0;
    let kh = d("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "@cert-authority {net}.* {} {}\n",
            ca_fields[0], ca_fields[1]
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let text = text
        .replace(
            &lab.known_hosts_path().display().to_string(),
            &kh.display().to_string(),
        )
        .replace(&lab.key_path().display().to_string(), &ds("user"));
    let inv = d("certs.toml");
    std::fs::write(&inv, text).unwrap();
    let inv = inv.to_str().unwrap();
    let user = Edgeops::new();

    let out = user.run(&["exec", inv, "--", "whoami"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("lab-01: pi\n"), "{}", all(&out));

    // Without the certificate the same key is not authorized.
    std::fs::rename(d("user-cert.pub"), d("user-cert.pub.away")).unwrap();
    let out = user.run(&["exec", inv, "--", "whoami"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        all(&out).contains("authentication as pi failed"),
        "{}",
        all(&out)
    );
    std::fs::rename(d("user-cert.pub.away"), d("user-cert.pub")).unwrap();

    // The certificate held by ssh-agent, no key file at all.
    let sock = d("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // ssh-add loads the key and the certificate beside it.
    let added = Command::new("ssh-add")
        .arg(d("user"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(all(&added).contains("Certificate added"), "{}", all(&added));
    let agent_inv = d("agent.toml");
    let with_file = std::fs::read_to_string(inv).unwrap();
    let agent_only = with_file.replace(
        &format!("identity_files = [\"{}\"]", ds("user")),
        "identity_files = []",
    );
    assert_ne!(agent_only, with_file, "the agent inventory has no key file");
    std::fs::write(&agent_inv, agent_only).unwrap();
    let agent_user = Edgeops::new().with_env("SSH_AUTH_SOCK", sock.to_str().unwrap());
    let out = agent_user.run(&["exec", agent_inv.to_str().unwrap(), "--", "whoami"]);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("lab-01: pi\n"), "{}", all(&out));

    // A CA line for another authority: the certificate is refused, naming its signer.
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &ds("other-ca")]);
    let other: Vec<String> = read(&d("other-ca.pub"))
        .split(' ')
        .map(str::to_string)
        .collect();
    let trusted = std::fs::read_to_string(&kh).unwrap();
    std::fs::write(
        &kh,
        format!("@cert-authority {net}.* {} {}\n", other[0], other[1]),
    )
    .unwrap();
    let out = user.run(&["exec", inv, "--", "whoami"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        all(&out).contains("which no @cert-authority line"),
        "{}",
        all(&out)
    );
    std::fs::write(&kh, trusted).unwrap();

    // The host key revoked: refused although the certificate is valid.
    let host_fields: Vec<&str> = host_pub.split(' ').collect();
    std::fs::write(
        &kh,
        format!(
            "{}@revoked * {} {}\n",
            std::fs::read_to_string(&kh).unwrap(),
            host_fields[0],
            host_fields[1]
        ),
    )
    .unwrap();
    let out = user.run(&["exec", inv, "--", "whoami"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("is @revoked at"), "{}", all(&out));
}
