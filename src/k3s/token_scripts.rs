//! The join token on a host, by script, so no value is ever printed, logged or on a command
//! line: compare the inventory's token with a server's (and read the verdict), have k3s rotate
//! it (what `k3s token rotate` sends), and write a node's token file. Each takes its secrets on
//! stdin.

/// Compares the token on stdin (first line) with the first server's, the secret part and,
/// when both carry one, the CA hash; prints `token-check: same|secret-differs|ca-differs|absent`.
/// Run with sudo (the server's token file is 0600). Only shell builtins see the values.
pub fn token_check_script() -> String {
    format!(
        "IFS= read -r want || true\n\
         f={path}\n\
         if [ ! -s \"$f\" ]; then echo 'token-check: absent'; exit 0; fi\n\
         IFS= read -r have <\"$f\" || true\n\
         secret() {{ case \"$1\" in K10*::*:*) printf '%s' \"${{1#*::*:}}\" ;; *) printf '%s' \"$1\" ;; esac; }}\n\
         cahash() {{ case \"$1\" in K10*::*) v=${{1#K10}}; printf '%s' \"${{v%%::*}}\" ;; esac; }}\n\
         if [ \"$(secret \"$want\")\" != \"$(secret \"$have\")\" ]; then echo 'token-check: secret-differs'\n\
         elif [ -n \"$(cahash \"$want\")\" ] && [ \"$(cahash \"$want\")\" != \"$(cahash \"$have\")\" ]; then echo 'token-check: ca-differs'\n\
         else echo 'token-check: same'; fi\n",
        path = super::token::NODE_TOKEN_PATH,
    )
}

/// What [`token_check_script`] printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The same token, or none on the server yet (`same`, `absent`).
    Matches,
    /// A token of another cluster (`ca-differs`).
    CaDiffers,
    /// Not the token the cluster was started with (`secret-differs`).
    SecretDiffers,
    /// No verdict line.
    NoAnswer,
}

impl TokenCheck {
    pub fn parse(stdout: &str) -> TokenCheck {
        let verdict = stdout
            .lines()
            .find_map(|l| l.strip_prefix("token-check: "))
            .unwrap_or("")
            .trim();
        match verdict {
            "same" | "absent" => TokenCheck::Matches,
            "ca-differs" => TokenCheck::CaDiffers,
            "secret-differs" => TokenCheck::SecretDiffers,
            _ => TokenCheck::NoAnswer,
        }
    }

    /// Why the inventory's token is not the cluster's; `None` unless it differs.
    pub fn mismatch(self) -> Option<&'static str> {
        match self {
            TokenCheck::CaDiffers => {
                Some("its CA hash is not this cluster's CA (a token of another cluster)")
            }
            TokenCheck::SecretDiffers => Some("it is not the token the cluster was started with"),
            TokenCheck::Matches | TokenCheck::NoAnswer => None,
        }
    }
}

/// `k3s token rotate` as a request to k3s's own endpoint (`PUT /v1-k3s/token` with the old
/// token's `server` credentials, what the `k3s token rotate` command sends), run with sudo on the
/// first server. The CLI takes the new token only as `--new-token` on its command line; here the
/// new token comes on stdin and both travel in 0600 files of a private temporary folder, so
/// neither is ever on a command line. Prints nothing secret.
pub fn rotate_request_script() -> String {
    r#"set -eu
umask 077
IFS= read -r new
IFS= read -r old <NODE_TOKEN
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
esc() { printf '%s' "$1" | sed 's/[\\"]/\\&/g'; }
printf 'user = "server:%s"\n' "$(esc "${old#*::*:}")" >"$d/cfg"
printf '{"newToken":"%s"}' "$(esc "$new")" >"$d/body"
unset new old
code=$(curl -sS -o "$d/out" -w '%{http_code}' -K "$d/cfg" \
  --cacert /var/lib/rancher/k3s/server/tls/server-ca.crt -X PUT \
  -H 'Content-Type: application/json' --data-binary @"$d/body" \
  https://127.0.0.1:6443/v1-k3s/token) || { echo 'edgeops: the token rotation request did not reach k3s' >&2; exit 1; }
if [ "$code" != 200 ]; then
  echo "edgeops: k3s refused the token rotation (HTTP $code): $(head -c 300 "$d/out")" >&2
  exit 1
fi
echo 'edgeops: k3s rotated the join token'
"#
    .replace("NODE_TOKEN", super::token::NODE_TOKEN_PATH)
}

/// Write the token on stdin to edgeops's token file (`K3S_TOKEN_FILE` of the unit) when it
/// differs, then (`restart`) restart the unit so the node runs with it. Run with sudo.
pub fn token_file_script(restart: Option<&str>) -> String {
    let mut script = r#"set -eu
umask 077
IFS= read -r new
f=TOKEN_FILE
if [ "$(cat "$f" 2>/dev/null)" != "$new" ]; then
  tmp=$(mktemp /etc/rancher/k3s/.edgeops-token.XXXXXX)
  printf '%s\n' "$new" >"$tmp"
  mv -f "$tmp" "$f"
  echo 'edgeops: token file written'
fi
unset new
"#
    .replace("TOKEN_FILE", super::install::TOKEN_FILE_PATH);
    if let Some(unit) = restart {
        script.push_str(&format!("systemctl restart {unit}\n"));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check script against a server token file in a temp folder.
    fn check(server: &str, inventory: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{server}\n")).unwrap();
        let script = token_check_script()
            .replace(super::super::token::NODE_TOKEN_PATH, path.to_str().unwrap());
        let out = crate::shell::run_locally(&script, format!("{inventory}\n").as_bytes());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn the_check_compares_secrets_and_ca_hashes_and_prints_neither() {
        let ca = "a".repeat(64);
        let server = format!("K10{ca}::server:s3cret:with:colons");
        assert_eq!(check(&server, "s3cret:with:colons"), "token-check: same");
        assert_eq!(check(&server, &server), "token-check: same");
        assert_eq!(check(&server, "other"), "token-check: secret-differs");
        let other_ca = format!("K10{}::server:s3cret:with:colons", "b".repeat(64));
        assert_eq!(check(&server, &other_ca), "token-check: ca-differs");
        assert!(!token_check_script().contains("s3cret"));
    }

    #[test]
    fn the_check_answer_reads_as_a_verdict() {
        assert_eq!(
            TokenCheck::parse("x\ntoken-check: absent\n"),
            TokenCheck::Matches
        );
        assert_eq!(TokenCheck::parse("token-check: same"), TokenCheck::Matches);
        assert_eq!(
            TokenCheck::parse("token-check: ca-differs"),
            TokenCheck::CaDiffers
        );
        assert_eq!(
            TokenCheck::parse("token-check: secret-differs\n"),
            TokenCheck::SecretDiffers
        );
        assert_eq!(TokenCheck::parse("sudo: no\n"), TokenCheck::NoAnswer);
        assert!(TokenCheck::Matches.mismatch().is_none());
    }
}
