//! The deciding half of `edgeops upgrade`: per host, from its facts and its node, which version it
//! runs and what it needs to reach the target; the downgrade refusal; and the rolling order
//! (first server, other servers one at a time, then agents in batches). Pure: no host is touched.

use crate::inventory::{Host, Role};
use crate::k3s::K3sVersion;

use crate::host::facts::Facts;

/// What one host needs to reach the target version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Re-run the installer at the target version (`from` is what it runs now).
    Upgrade,
    /// Binary and node already at the target.
    Already,
    /// No k3s here (or not as the inventory's role): nothing to upgrade, `up` installs it.
    NotInstalled(String),
    /// Set up differently from the inventory: never guess.
    Refuse(String),
}

/// A host's version now and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNeed {
    /// The version the host runs: its node's kubeletVersion when the cluster lists it (that is
    /// what runs), else the installed binary's.
    pub from: Option<K3sVersion>,
    pub need: Need,
}

/// Decide for one host. `node_version`: the kubeletVersion of its node, if registered.
pub fn decide_upgrade(
    host: &Host,
    facts: &Facts,
    node_version: Option<&K3sVersion>,
    target: &K3sVersion,
) -> HostNeed {
    let binary = facts.k3s_version.as_ref();
    let from = node_version.or(binary).cloned();
    let need = match facts.service(host.role) {
        None => match facts.services.first() {
            Some(other) => Need::Refuse(format!(
                "k3s is installed here as {} ({}.service), the inventory says {}: run `edgeops reset` on it first",
                other.role.as_str(),
                other.unit,
                host.role.as_str()
            )),
            None => Need::NotInstalled(format!(
                "no {} k3s service here: nothing to upgrade (`edgeops up` installs it)",
                host.role.as_str()
            )),
        },
        Some(_) if binary.is_none() => Need::Upgrade,
        Some(_) => {
            // A binary at the target whose node still reports another version is an upgrade
            // that did not finish (the installer failed after replacing the binary).
            if binary == Some(target) && node_version.is_none_or(|v| v == target) {
                Need::Already
            } else {
                Need::Upgrade
            }
        }
    };
    HostNeed { from, need }
}

/// Hosts that would go to an older version: `(host, from)`.
pub fn downgrades<'a>(
    needs: impl IntoIterator<Item = (&'a str, &'a HostNeed)>,
    target: &K3sVersion,
) -> Vec<(String, K3sVersion)> {
    needs
        .into_iter()
        .filter(|(_, n)| n.need == Need::Upgrade)
        .filter_map(|(host, n)| {
            let from = n.from.as_ref()?;
            (from > target).then(|| (host.to_owned(), from.clone()))
        })
        .collect()
}

/// The rolling order: the first server, then the other servers in inventory order (each alone),
/// then agents in inventory order, `batch_size` at a time.
pub fn rolling_order<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    first: &str,
    batch_size: usize,
) -> (Vec<String>, Vec<Vec<String>>) {
    let hosts: Vec<&Host> = hosts.into_iter().collect();
    let mut servers: Vec<String> = hosts
        .iter()
        .filter(|h| h.role == Role::Server && h.name == first)
        .map(|h| h.name.clone())
        .collect();
    servers.extend(
        hosts
            .iter()
            .filter(|h| h.role == Role::Server && h.name != first)
            .map(|h| h.name.clone()),
    );
    let agents: Vec<String> = hosts
        .iter()
        .filter(|h| h.role == Role::Agent)
        .map(|h| h.name.clone())
        .collect();
    let batches = agents
        .chunks(batch_size.max(1))
        .map(<[String]>::to_vec)
        .collect();
    (servers, batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory;

    fn v(text: &str) -> K3sVersion {
        text.parse().unwrap()
    }

    fn agent() -> Host {
        test_inventory::pi_inventory()
            .hosts
            .iter()
            .find(|h| h.role == Role::Agent)
            .unwrap()
            .clone()
    }

    #[test]
    fn older_host_upgrades_and_current_host_is_already_there() {
        let host = agent();
        let target = v("v1.31.4+k3s1");
        let old = Facts::parse("k3s_version=v1.30.8+k3s1\nunit_k3s-agent=active\n");
        let need = decide_upgrade(&host, &old, Some(&v("v1.30.8+k3s1")), &target);
        assert_eq!(need.need, Need::Upgrade);
        assert_eq!(need.from, Some(v("v1.30.8+k3s1")));
        let current = Facts::parse("k3s_version=v1.31.4+k3s1\nunit_k3s-agent=active\n");
        let need = decide_upgrade(&host, &current, Some(&target), &target);
        assert_eq!(need.need, Need::Already);
    }

    #[test]
    fn a_new_binary_under_an_old_node_is_an_unfinished_upgrade() {
        let host = agent();
        let target = v("v1.31.4+k3s1");
        let facts = Facts::parse("k3s_version=v1.31.4+k3s1\nunit_k3s-agent=active\n");
        let need = decide_upgrade(&host, &facts, Some(&v("v1.31.3+k3s1")), &target);
        assert_eq!(need.need, Need::Upgrade);
        assert_eq!(need.from, Some(v("v1.31.3+k3s1")));
    }

    #[test]
    fn bare_and_wrong_role_hosts_are_not_upgraded() {
        let host = agent();
        let target = v("v1.31.4+k3s1");
        let bare = decide_upgrade(&host, &Facts::parse("arch=x86_64\n"), None, &target);
        assert!(matches!(bare.need, Need::NotInstalled(ref r) if r.contains("edgeops up")));
        let server = Facts::parse("k3s_version=v1.31.3+k3s1\nunit_k3s=active\n");
        let wrong = decide_upgrade(&host, &server, None, &target);
        assert!(matches!(wrong.need, Need::Refuse(ref r) if r.contains("reset")));
    }

    #[test]
    fn downgrades_name_the_hosts_above_the_target() {
        let target = v("v1.31.3+k3s1");
        let newer = HostNeed {
            from: Some(v("v1.31.4+k3s1")),
            need: Need::Upgrade,
        };
        let older = HostNeed {
            from: Some(v("v1.30.8+k3s1")),
            need: Need::Upgrade,
        };
        let found = downgrades([("a", &newer), ("b", &older)], &target);
        assert_eq!(found, vec![("a".to_owned(), v("v1.31.4+k3s1"))]);
    }

    #[test]
    fn first_server_leads_then_servers_then_agent_batches() {
        let inventory = test_inventory::pi_inventory();
        let first = inventory
            .hosts
            .iter()
            .find(|h| h.role == Role::Server)
            .unwrap()
            .name
            .clone();
        let (servers, batches) = rolling_order(&inventory.hosts, &first, 1);
        assert_eq!(servers.first(), Some(&first));
        let agents = inventory
            .hosts
            .iter()
            .filter(|h| h.role == Role::Agent)
            .count();
        assert_eq!(batches.len(), agents);
        assert!(batches.iter().all(|b| b.len() == 1));
    }
}
