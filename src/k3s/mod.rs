//! k3s knowledge, without SSH: versions and channels, channel → version resolution, the install
//! invocation and config file per host, air-gap artifacts (fetched, verified, cached on the
//! workstation), join tokens, node readiness, auto-deploy HelmChart states, kubeconfig
//! handling, and what k3s leaves on a host and how it is removed (`uninstall`).
//! Phases combine these with the fleet; nothing here opens a connection to a host.

pub mod airgap;
pub mod airgap_files;
pub mod arch;
pub mod bundle;
pub mod channel;
pub mod drain;
pub mod extras;
pub mod firewall;
pub mod gitlab_charts;
pub mod helmcharts;
pub mod install;
pub mod join_watch;
pub mod k3s_yaml;
pub mod kubeconfig;
pub mod nodes;
pub mod quorum;
pub mod registries;
pub mod remote;
pub mod skew;
pub mod snapshot;
pub mod token;
pub mod token_scripts;
pub mod uninstall;
pub mod version;

#[cfg(test)]
pub(crate) mod test_inventory;

pub use arch::K3sArch;
pub use channel::{ChannelResolver, ResolveError};
pub use install::{InstallError, InstallSpec, Join};
pub use token::JoinToken;
pub use version::{Channel, K3sVersion};
