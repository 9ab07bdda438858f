//! Which hosts a reset may take: the whole cluster (the first server and every other host), or
//! some hosts leaving a cluster that stays; the first server without the rest is refused.

use crate::host::lock::LockError;
use crate::inventory::Inventory;
use crate::k3s::install::first_server;

use super::outcome::Scope;

/// Why a reset was refused before anything changed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "--limit selects the first server {first} but not {}: resetting the first server wipes the \
         cluster, which would orphan them; reset every host (no --limit), or leave {first} out to \
         remove only the selected hosts from the cluster",
        outside.join(", ")
    )]
    FirstServerWithoutTheRest { first: String, outside: Vec<String> },
    /// Another run holds the lock, or it could not be taken.
    #[error(transparent)]
    Lock(LockError),
}

/// Decide the scope of a reset of `selected` (names), or refuse (see the module doc).
pub fn scope(inventory: &Inventory, selected: &[String]) -> Result<Scope, ResetError> {
    let first = first_server(inventory)
        .map(|h| h.name.clone())
        .unwrap_or_default();
    if !selected.contains(&first) {
        return Ok(Scope::Hosts);
    }
    let outside: Vec<String> = inventory
        .hosts
        .iter()
        .filter(|h| !selected.contains(&h.name))
        .map(|h| h.name.clone())
        .collect();
    if outside.is_empty() {
        Ok(Scope::Cluster)
    } else {
        Err(ResetError::FirstServerWithoutTheRest { first, outside })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let inv = crate::inventory::parse(
            "[cluster]\nname = \"lab\"\n\
             [ssh]\nuser = \"pi\"\n\
             [[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
             [[hosts]]\nname = \"a[1-2]\"\naddress = \"10.0.0.[2-3]\"\nrole = \"agent\"\n",
            std::path::Path::new("lab.toml"),
        )
        .unwrap();
        let all: Vec<String> = ["s1", "a1", "a2"].map(String::from).to_vec();
        assert_eq!(scope(&inv, &all).unwrap(), Scope::Cluster);
        assert_eq!(scope(&inv, &["a2".to_owned()]).unwrap(), Scope::Hosts);
        let err = scope(&inv, &["s1".to_owned(), "a1".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--limit selects the first server s1 but not a2"),
            "{err}"
        );
    }
}
