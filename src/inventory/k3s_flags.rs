//! The k3s command-line flags (= `config.yaml` keys) edgeops knows, per role, to check the
//! inventory's free-form `[cluster.k3s_config]` keys (with a did-you-mean) and to send
//! server-only keys to servers alone. From `k3s server --help` / `k3s agent --help` and
//! docs.k3s.io "CLI Tools" (v1.29-v1.32 releases); flags added later are refused until listed.

/// Flags both `k3s server` and `k3s agent` take.
pub const AGENT_FLAGS: &[&str] = &[
    "airgap-extra-registry",
    "container-runtime-endpoint",
    "data-dir",
    "debug",
    "default-runtime",
    "disable-apiserver-lb",
    "disable-default-registry-endpoint",
    "docker",
    "enable-pprof",
    "flannel-cni-conf",
    "flannel-conf",
    "flannel-iface",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "image-service-endpoint",
    "kube-proxy-arg",
    "kubelet-arg",
    "lb-server-port",
    "log",
    "alsologtostderr",
    "node-external-dns",
    "node-external-ip",
    "node-internal-dns",
    "node-ip",
    "node-label",
    "node-taint",
    "nonroot-devices",
    "pause-image",
    "prefer-bundled-bin",
    "private-registry",
    "protect-kernel-defaults",
    "resolv-conf",
    "rootless",
    "selinux",
    "snapshotter",
    "system-default-registry",
    "v",
    "vmodule",
    "vpn-auth",
    "vpn-auth-file",
    "with-node-id",
];

/// Flags only `k3s server` takes.
pub const SERVER_ONLY_FLAGS: &[&str] = &[
    "advertise-address",
    "advertise-port",
    "agent-token-file",
    "bind-address",
    "cluster-cidr",
    "cluster-dns",
    "cluster-domain",
    "cluster-reset",
    "cluster-reset-restore-path",
    "datastore-cafile",
    "datastore-certfile",
    "datastore-endpoint",
    "datastore-keyfile",
    "default-local-storage-path",
    "disable",
    "disable-cloud-controller",
    "disable-helm-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-scheduler",
    "egress-selector-mode",
    "embedded-registry",
    "etcd-arg",
    "etcd-disable-snapshots",
    "etcd-expose-metrics",
    "etcd-s3",
    "etcd-s3-bucket",
    "etcd-s3-config-secret",
    "etcd-s3-endpoint",
    "etcd-s3-endpoint-ca",
    "etcd-s3-folder",
    "etcd-s3-insecure",
    "etcd-s3-proxy",
    "etcd-s3-region",
    "etcd-s3-skip-ssl-verify",
    "etcd-s3-timeout",
    "etcd-s3-access-key",
    "etcd-snapshot-compress",
    "etcd-snapshot-dir",
    "etcd-snapshot-name",
    "etcd-snapshot-retention",
    "etcd-snapshot-schedule-cron",
    "flannel-backend",
    "flannel-external-ip",
    "flannel-ipv6-masq",
    "helm-job-image",
    "kine-tls",
    "kube-apiserver-arg",
    "kube-cloud-controller-manager-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "secrets-encryption",
    "secrets-encryption-provider",
    "service-cidr",
    "service-node-port-range",
    "servicelb-namespace",
    "supervisor-metrics",
    "tls-san",
    "tls-san-security",
    "write-kubeconfig",
    "write-kubeconfig-group",
    "write-kubeconfig-mode",
];

/// Flags whose value is a secret: they would land in the world-readable `config.yaml`.
pub const SECRET_FLAGS: &[&str] = &[
    "token",
    "agent-token",
    "etcd-s3-secret-key",
    "etcd-s3-session-token",
];

/// Which hosts a known flag applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagScope {
    AllNodes,
    ServersOnly,
}

/// The scope of a known flag, or `None` for a flag edgeops does not know.
pub fn scope(flag: &str) -> Option<FlagScope> {
    if AGENT_FLAGS.contains(&flag) {
        Some(FlagScope::AllNodes)
    } else if SERVER_ONLY_FLAGS.contains(&flag) {
        Some(FlagScope::ServersOnly)
    } else {
        None
    }
}

/// Every known flag, for suggestions.
pub fn all() -> impl Iterator<Item = &'static str> {
    AGENT_FLAGS.iter().chain(SERVER_ONLY_FLAGS).copied()
}
