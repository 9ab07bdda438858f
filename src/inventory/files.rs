//! Offline checks of the files an inventory names, so `check` catches what `up` would only find
//! after connecting: identity files are private keys russh can read (a passphrase-protected key
//! is recognised as such), a `known_hosts` is a readable file whose every line parses (bad lines
//! named by number), and a relative `templates_dir` stays inside the inventory's folder.

use std::path::Path;

use super::formats::Invalid;

/// The largest key or known_hosts file read here; real ones are a few KiB.
const MAX_CHECKED_FILE_BYTES: u64 = 1024 * 1024;

/// What an identity file holds, when it is a usable private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    Plain,
    /// Needs its passphrase (`passphrase_env`, or asked on the terminal) before it can be used.
    PassphraseProtected,
}

fn invalid(message: String, help: &str) -> Invalid {
    Invalid {
        message,
        help: help.to_owned(),
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if metadata.len() > MAX_CHECKED_FILE_BYTES {
        return Err("it is larger than 1 MiB".to_owned());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "it is not text".to_owned())
}

/// An identity file (already known to exist) as russh reads it at connect time.
pub fn identity_file(path: &Path) -> Result<KeyFile, Invalid> {
    let help = "list OpenSSH private key files (e.g. `~/.ssh/id_ed25519`, not the `.pub` file), or use `agent = true` with keys loaded in ssh-agent";
    let text = read_bounded(path).map_err(|reason| {
        invalid(
            format!(
                "identity file `{}` cannot be read: {reason}",
                path.display()
            ),
            help,
        )
    })?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(_) => Ok(KeyFile::Plain),
        Err(russh::keys::Error::KeyIsEncrypted) => Ok(KeyFile::PassphraseProtected),
        Err(_)
            if russh::keys::parse_public_key_base64(
                text.split_whitespace().nth(1).unwrap_or_default(),
            )
            .is_ok() =>
        {
            Err(invalid(
                format!(
                    "identity file `{}` is a public key, not a private key",
                    path.display()
                ),
                help,
            ))
        }
        Err(e) => Err(invalid(
            format!(
                "identity file `{}` is not a private key edgeops can use ({e})",
                path.display()
            ),
            help,
        )),
    }
}

/// A `known_hosts` file: absent is fine when its folder exists (accept-new creates it, and
/// `~/.ssh/known_hosts` is read too); otherwise it must be a readable file whose every line is a
/// `host keytype base64` entry, a comment, or blank.
pub fn known_hosts(path: &Path) -> Result<(), Invalid> {
    let help = "point `known_hosts` at an OpenSSH known_hosts file (`HOST KEYTYPE BASE64` per line; relative paths start at the inventory's folder)";
    if !path.exists() {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        if folder.is_some_and(|folder| !folder.is_dir()) {
            return Err(invalid(
                format!(
                    "known_hosts `{}`: its folder does not exist, so it can be neither read nor created",
                    path.display()
                ),
                help,
            ));
        }
        return Ok(());
    }
    let text = read_bounded(path).map_err(|reason| {
        invalid(
            format!("known_hosts `{}` cannot be read: {reason}", path.display()),
            help,
        )
    })?;
    let mut parsed = crate::ssh::KnownHosts::load(&[], None)
        .map_err(|e| invalid(format!("known_hosts `{}`: {e}", path.display()), help))?;
    parsed.add_text(path, &text);
    if parsed.skipped.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = parsed.skipped.iter().map(|o| o.line.to_string()).collect();
    Err(invalid(
        format!(
            "known_hosts `{}`: line{} {} {} not a known_hosts entry",
            path.display(),
            if lines.len() == 1 { "" } else { "s" },
            lines.join(", "),
            if lines.len() == 1 { "is" } else { "are" },
        ),
        help,
    ))
}

/// A relative `templates_dir` (as written, `written`) must stay inside the inventory's folder
/// `base`, also through `..` and symlinks; an absolute one is the user's explicit choice.
pub fn templates_dir_stays_in(written: &str, resolved: &Path, base: &Path) -> Result<(), Invalid> {
    if Path::new(written).is_absolute() || written.starts_with('~') {
        return Ok(());
    }
    let (Ok(dir), Ok(base)) = (resolved.canonicalize(), base.canonicalize()) else {
        return Ok(()); // a missing folder is reported on its own
    };
    if dir.starts_with(&base) {
        return Ok(());
    }
    Err(invalid(
        format!(
            "templates_dir `{written}` leaves the inventory's folder (it is `{}`)",
            dir.display()
        ),
        "keep template overrides in a folder beside the inventory, or write an absolute path to use one elsewhere on purpose",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_bad_lines_are_named_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(
            &path,
            "# comment\n10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\ngarbage\n\n10.0.0.2 ssh-ed25519 notbase64\n",
        )
        .unwrap();
        let err = known_hosts(&path).unwrap_err();
        assert!(
            err.message
                .ends_with("lines 3, 5 are not a known_hosts entry"),
            "{}",
            err.message
        );
        assert!(known_hosts(&dir.path().join("absent")).is_ok());
        let err = known_hosts(&dir.path().join("nope/known_hosts")).unwrap_err();
        assert!(
            err.message.contains("its folder does not exist"),
            "{}",
            err.message
        );
        let err = known_hosts(dir.path()).unwrap_err();
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );
    }

    #[test]
    fn templates_dir_may_not_leave_the_inventory_folder() {
        let root = tempfile::tempdir().unwrap();
        let site = root.path().join("site");
        std::fs::create_dir_all(site.join("tpl")).unwrap();
        std::fs::create_dir_all(root.path().join("elsewhere")).unwrap();
        assert!(templates_dir_stays_in("tpl", &site.join("tpl"), &site).is_ok());
        assert!(templates_dir_stays_in("tpl/../tpl", &site.join("tpl/../tpl"), &site).is_ok());
        let err =
            templates_dir_stays_in("../elsewhere", &site.join("../elsewhere"), &site).unwrap_err();
        assert!(
            err.message.contains("leaves the inventory's folder"),
            "{}",
            err.message
        );
        std::os::unix::fs::symlink(root.path().join("elsewhere"), site.join("link")).unwrap();
        assert!(templates_dir_stays_in("link", &site.join("link"), &site).is_err());
        let absolute = root.path().join("elsewhere");
        assert!(templates_dir_stays_in(absolute.to_str().unwrap(), &absolute, &site).is_ok());
    }
}
