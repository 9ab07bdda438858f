//! k3s flags that carry a secret (`--token`, `--etcd-s3-secret-key`, a `--datastore-endpoint`
//! with a password, ...) refused in `server_args`, `agent_args` and `extra_args`: written there,
//! the secret would sit in clear in the inventory, in `render` output and in every copy of the
//! file. Each refusal names the flag (its value masked) and the way that keeps the secret out.

use std::ops::Range;

use toml::Spanned;

use super::diagnostics::Ctx;

/// Flags whose value is a secret, and where that secret belongs instead.
const SECRET_FLAGS: &[(&str, &str)] = &[
    (
        "token",
        "give the cluster token with `[cluster] token_env` or `token_file`",
    ),
    (
        "t",
        "give the cluster token with `[cluster] token_env` or `token_file`",
    ),
    (
        "agent-token",
        "edgeops joins agents with the `[cluster]` token (`token_env` or `token_file`)",
    ),
    (
        "etcd-s3-secret-key",
        "keep the S3 credentials in a Kubernetes Secret and name it with `--etcd-s3-config-secret=NAME`",
    ),
    (
        "etcd-s3-session-token",
        "keep the S3 credentials in a Kubernetes Secret and name it with `--etcd-s3-config-secret=NAME`",
    ),
    (
        "vpn-auth",
        "put the VPN auth string in a 0600 file on the hosts and pass `--vpn-auth-file=PATH`",
    ),
];

const DATASTORE_HELP: &str = "keep the password out of the endpoint: authenticate to the datastore \
     with a client certificate (`--datastore-cafile`, `--datastore-certfile`, `--datastore-keyfile`, \
     files on the servers)";

/// Check one list of k3s arguments (`scope`: where it is, for the message).
pub(super) fn check(ctx: &mut Ctx, args: &[Spanned<String>], scope: &str) {
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let text = arg.get_ref();
        let Some(body) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            continue;
        };
        let dashes = &text[..text.len() - body.len()];
        // `--flag=value`, or `--flag` then `value` as the next element.
        let (flag, value, value_span): (&str, Option<&str>, Range<usize>) =
            match body.split_once('=') {
                Some((flag, value)) => (flag, Some(value), arg.span()),
                None => match iter.peek() {
                    Some(next) if !next.get_ref().starts_with('-') => {
                        let span = arg.span().start..next.span().end;
                        (body, Some(next.get_ref().as_str()), span)
                    }
                    _ => (body, None, arg.span()),
                },
            };
        if let Some((_, help)) = SECRET_FLAGS.iter().find(|(name, _)| *name == flag) {
            ctx.report_secret(
                value_span,
                format!("inline secret: `{dashes}{flag}` in {scope} carries a secret in clear"),
                (*help).to_owned(),
            );
        } else if flag == "datastore-endpoint" && value.is_some_and(endpoint_has_password) {
            ctx.report_secret(
                value_span,
                format!("inline secret: `--datastore-endpoint` in {scope} holds a password"),
                DATASTORE_HELP.to_owned(),
            );
        }
    }
}

/// `scheme://user:password@host/...`, `user:password@tcp(host)/db` (MySQL) or a `password=`
/// parameter (PostgreSQL key/value or query form).
fn endpoint_has_password(endpoint: &str) -> bool {
    let lower = endpoint.to_ascii_lowercase();
    if lower.contains("password=") {
        return true;
    }
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    after_scheme
        .split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::endpoint_has_password;

    #[test]
    fn endpoints_with_passwords_are_recognised() {
        assert!(endpoint_has_password("postgres://u:PW@db:5432/k3s"));
        assert!(endpoint_has_password("mysql://u:PW@tcp(db:3306)/k3s"));
        assert!(endpoint_has_password("host=db user=u password=PW"));
        assert!(endpoint_has_password("postgres://u@db/k3s?password=PW"));
        assert!(!endpoint_has_password("postgres://u@db:5432/k3s"));
        assert!(!endpoint_has_password(
            "https://etcd-1:2379,https://etcd-2:2379"
        ));
    }
}
