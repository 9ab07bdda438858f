//! Opening the k3s ports on a host whose ufw or firewalld is active (docs.k3s.io "Requirements",
//! inbound rules, and "Known issues": firewalld needs the pod and service networks trusted).
//! A shell snippet for the install step: it checks on the host which firewall is active, so a
//! host without one runs nothing. `[cluster] open_firewall = false` leaves firewalls alone.

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
/// ports, the networks in the trusted zone, then a reload. Idempotent (both skip existing rules).
pub fn script(role: Role, ha: bool, cluster_cidr: &str, service_cidr: &str) -> String {
    let ports = ports(role, ha);
    let ufw: Vec<String> = ports.iter().map(|p| p.replace('-', ":")).collect();
    format!(
        "if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then\n\
         \x20 for p in {ufw}; do ufw allow \"$p\" >/dev/null; done\n\
         \x20 ufw allow from {cluster} to any >/dev/null\n\
         \x20 ufw allow from {service} to any >/dev/null\n\
         \x20 echo 'edgeops: ufw: opened {shown} and trusted {cluster}, {service}'\n\
         fi\n\
         if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then\n\
         \x20 for p in {fw}; do firewall-cmd --permanent --add-port=\"$p\" >/dev/null; done\n\
         \x20 firewall-cmd --permanent --zone=trusted --add-source={cluster} >/dev/null\n\
         \x20 firewall-cmd --permanent --zone=trusted --add-source={service} >/dev/null\n\
         \x20 firewall-cmd --reload >/dev/null\n\
         \x20 echo 'edgeops: firewalld: opened {shown} and trusted {cluster}, {service}'\n\
         fi\n",
        ufw = ufw.join(" "),
        fw = ports.join(" "),
        shown = ports.join(", "),
        cluster = cluster_cidr,
        service = service_cidr,
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
            s.contains("for p in 6443/tcp 2379:2380/tcp 10250/tcp 8472/udp; do ufw allow"),
            "{s}"
        );
        assert!(s.contains("--add-port=\"$p\""), "{s}");
        assert!(
            s.contains("for p in 6443/tcp 2379-2380/tcp 10250/tcp 8472/udp; do firewall-cmd"),
            "{s}"
        );
        assert!(
            s.contains("--zone=trusted --add-source=10.42.0.0/16"),
            "{s}"
        );
        assert!(s.contains("ufw allow from 10.43.0.0/16 to any"), "{s}");
    }
}
