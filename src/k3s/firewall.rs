//! Opening the k3s ports on a host whose ufw, firewalld or nftables firewall is active (docs.k3s.io "Requirements",
//! inbound rules, and "Known issues": firewalld needs the pod and service networks trusted).
//! A shell snippet for the install step (`sh/firewall.sh`, `sh/nftables.sh`): it checks on the
//! host which firewall is active, so a host without one runs nothing. `[cluster] open_firewall = false` leaves firewalls alone.

use crate::inventory::Role;

/// The pod and service networks k3s uses unless `cluster-cidr` / `service-cidr` say otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// Inbound ports of a node of `role`: the API (servers), etcd peers (HA servers), the kubelet
/// and flannel's VXLAN (every node). Ranges use `-` (firewalld); ufw gets `:`.
pub fn ports(role: Role, ha: bool) -> Vec<&'static str> {
    let mut ports = Vec::new();
    if role == Role::Server {
        ports.push("6443/tcp");
        if ha {
            ports.push("2379-2380/tcp");
        }
    }
    ports.extend(["10250/tcp", "8472/udp"]);
    ports
}

/// The snippet: for ufw, `ufw allow` each port and the two networks; for firewalld, permanent
/// ports, the networks in the trusted zone, then a reload; for a plain nftables firewall (neither
/// of those active), [`nft_script`] on every input chain with policy drop, re-applied at boot by
/// a drop-in of nftables.service when that service is enabled. Idempotent on every firewall.
pub fn script(role: Role, ha: bool, cluster_cidr: &str, service_cidr: &str) -> String {
    let ports = ports(role, ha);
    let ufw: Vec<String> = ports.iter().map(|p| p.replace('-', ":")).collect();
    crate::shell::with_vars(
        &[
            ("ufw_ports", &ufw.join(" ")),
            ("fw_ports", &ports.join(" ")),
            ("shown", &ports.join(", ")),
            ("cluster", cluster_cidr),
            ("service", service_cidr),
            (
                "nft_script",
                &nft_script(role, ha, cluster_cidr, service_cidr),
            ),
        ],
        include_str!("sh/firewall.sh"),
    )
}

/// The nftables part on its own (a script `sh` runs as root): accept rules, commented
/// `edgeops-k3s`, at the top of each input chain whose policy is drop.
pub fn nft_script(role: Role, ha: bool, cluster_cidr: &str, service_cidr: &str) -> String {
    let ports = ports(role, ha);
    let of = |proto: &str| -> String {
        ports
            .iter()
            .filter_map(|p| p.strip_suffix(&format!("/{proto}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    crate::shell::with_vars(
        &[
            ("nft_tcp", &of("tcp")),
            ("nft_udp", &of("udp")),
            ("cluster", cluster_cidr),
            ("service", service_cidr),
        ],
        include_str!("sh/nftables.sh"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_open_the_api_and_etcd_agents_only_kubelet_and_vxlan() {
        assert_eq!(
            ports(Role::Server, true),
            ["6443/tcp", "2379-2380/tcp", "10250/tcp", "8472/udp"]
        );
        assert_eq!(ports(Role::Agent, true), ["10250/tcp", "8472/udp"]);
        let s = script(
            Role::Server,
            true,
            DEFAULT_CLUSTER_CIDR,
            DEFAULT_SERVICE_CIDR,
        );
        assert!(
            s.contains("ufw_ports='6443/tcp 2379:2380/tcp 10250/tcp 8472/udp'"),
            "{s}"
        );
        assert!(
            s.contains("fw_ports='6443/tcp 2379-2380/tcp 10250/tcp 8472/udp'"),
            "{s}"
        );
        assert!(s.contains("cluster=10.42.0.0/16"), "{s}");
        let nft = nft_script(
            Role::Server,
            true,
            DEFAULT_CLUSTER_CIDR,
            DEFAULT_SERVICE_CIDR,
        );
        assert!(nft.contains("nft_tcp='6443, 2379-2380, 10250'"), "{nft}");
        assert!(nft.contains("nft_udp=8472"), "{nft}");
    }
}
