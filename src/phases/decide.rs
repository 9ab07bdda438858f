//! The deciding half of `up`: from a host's facts and the spec it should have, what it needs.
//! This is where idempotency lives: a host whose k3s, config hash and service already match
//! needs nothing, and `plan` prints exactly these decisions.

use crate::inventory::Host;
use crate::k3s::{InstallSpec, K3sVersion};

use crate::host::facts::Facts;

/// What one host needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Already as the inventory says.
    Nothing,
    /// k3s is not (completely) installed: write token + config, run the installer.
    Install,
    /// Installed at the right version, but edgeops's config differs: rewrite it, re-run the
    /// installer (for env changes), restart the service.
    Reconfigure,
    /// Config is current but the service is not running: restart it.
    Restart,
    /// Installed at an older version than the run pins (the inventory's version was raised):
    /// re-run the installer at the pinned version; servers one at a time.
    Upgrade,
}

impl Action {
    /// The verb for reports ("installed", ...), in the past tense once done.
    pub fn done_word(&self) -> &'static str {
        match self {
            Action::Nothing => "nothing to do",
            Action::Install => "installed",
            Action::Reconfigure => "reconfigured",
            Action::Restart => "restarted",
            Action::Upgrade => "upgraded",
        }
    }

    /// The step's name while it runs and in a failure reason ("install: connection lost"):
    /// never the success word, so a failed host never reads "installed".
    pub fn step_word(&self) -> &'static str {
        match self {
            Action::Nothing => "check",
            Action::Install => "install",
            Action::Reconfigure => "reconfigure",
            Action::Restart => "restart",
            Action::Upgrade => "upgrade",
        }
    }

    pub fn changes(&self) -> bool {
        *self != Action::Nothing
    }
}

/// An action and why (for `plan` and the report).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub action: Action,
    pub why: String,
}

/// Decide for `host`. `Err` = refuse with a reason (never guess on a host set up differently).
pub fn decide(
    host: &Host,
    facts: &Facts,
    spec: &InstallSpec,
    pinned: &K3sVersion,
) -> Result<Decision, String> {
    let role = host.role;
    let installed_version = facts.k3s_version.as_ref();
    let Some(service) = facts.service(role) else {
        if let Some(other) = facts.services.first() {
            return Err(format!(
                "k3s is installed here as {} ({}.service), the inventory says {}: run `edgeops reset` on it first",
                other.role.as_str(),
                other.unit,
                role.as_str()
            ));
        }
        let why = match installed_version {
            None => format!("k3s not installed; install {pinned} as {}", role.as_str()),
            Some(v) => format!(
                "k3s {v} binary present but no {} service (an earlier install failed); install {pinned}",
                spec_unit(spec)
            ),
        };
        return Ok(Decision {
            action: Action::Install,
            why,
        });
    };
    match installed_version {
        None => {
            return Ok(Decision {
                action: Action::Install,
                why: format!(
                    "{}.service exists but the k3s binary is missing; install {pinned}",
                    service.unit
                ),
            });
        }
        Some(v) if v < pinned => {
            return Ok(Decision {
                action: Action::Upgrade,
                why: format!("runs k3s {v}; upgrade to {pinned}"),
            });
        }
        Some(v) if v != pinned => {
            return Err(format!(
                "runs k3s {v}, newer than the pinned {pinned}: `up` never downgrades; \
                 `edgeops upgrade --version {pinned} --force` does"
            ));
        }
        Some(_) => {}
    }
    if facts.config_hash.as_deref() != Some(spec.config_hash.as_str()) {
        let why = match &facts.config_hash {
            None => "no edgeops config recorded here; write it and restart".to_owned(),
            Some(_) if !spec.files.is_empty() => {
                "config differs from the inventory (config.yaml, installer env, registries.yaml or manifests); rewrite it (restart when k3s needs it)".to_owned()
            }
            Some(_) => "config differs from the inventory; rewrite it and restart".to_owned(),
        };
        return Ok(Decision {
            action: Action::Reconfigure,
            why,
        });
    }
    if !service.active() {
        return Ok(Decision {
            action: Action::Restart,
            why: format!("{}.service is {}; restart it", service.unit, service.state),
        });
    }
    Ok(Decision {
        action: Action::Nothing,
        why: format!("k3s {pinned} {} running, config current", role.as_str()),
    })
}

fn spec_unit(spec: &InstallSpec) -> &'static str {
    crate::k3s::remote::unit_name(spec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_reason_never_starts_with_the_success_word() {
        for action in [
            Action::Nothing,
            Action::Install,
            Action::Reconfigure,
            Action::Restart,
            Action::Upgrade,
        ] {
            let reason = format!("{}: lab-01: connection lost", action.step_word());
            assert!(!reason.starts_with(action.done_word()), "{reason}");
        }
    }

    use super::*;
    use crate::k3s::install::Join;
    use crate::k3s::test_inventory;
    use crate::render::Renderer;

    fn setup() -> (Host, InstallSpec, K3sVersion) {
        let inventory = test_inventory::pi_inventory();
        let host = inventory
            .hosts
            .iter()
            .find(|h| h.role == crate::inventory::Role::Agent)
            .unwrap()
            .clone();
        let join = Join::for_host(&inventory, &host).unwrap();
        let version: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let spec =
            InstallSpec::new(&inventory, &host, join, &version, &Renderer::builtin()).unwrap();
        (host, spec, version)
    }

    #[test]
    fn bare_host_installs() {
        let (host, spec, v) = setup();
        let d = decide(&host, &Facts::parse("arch=aarch64\n"), &spec, &v).unwrap();
        assert_eq!(d.action, Action::Install);
    }

    #[test]
    fn converged_host_needs_nothing() {
        let (host, spec, v) = setup();
        let facts = Facts::parse(&format!(
            "k3s_version=v1.31.4+k3s1\nunit_k3s-agent=active\nconfig_hash={}\n",
            spec.config_hash
        ));
        assert_eq!(
            decide(&host, &facts, &spec, &v).unwrap().action,
            Action::Nothing
        );
    }

    #[test]
    fn changed_config_reconfigures_and_stopped_service_restarts() {
        let (host, spec, v) = setup();
        let facts =
            Facts::parse("k3s_version=v1.31.4+k3s1\nunit_k3s-agent=active\nconfig_hash=old\n");
        assert_eq!(
            decide(&host, &facts, &spec, &v).unwrap().action,
            Action::Reconfigure
        );
        let facts = Facts::parse(&format!(
            "k3s_version=v1.31.4+k3s1\nunit_k3s-agent=failed\nconfig_hash={}\n",
            spec.config_hash
        ));
        assert_eq!(
            decide(&host, &facts, &spec, &v).unwrap().action,
            Action::Restart
        );
    }

    #[test]
    fn failed_install_is_retried() {
        let (host, spec, v) = setup();
        let facts = Facts::parse("k3s_version=v1.31.4+k3s1\n");
        assert_eq!(
            decide(&host, &facts, &spec, &v).unwrap().action,
            Action::Install
        );
    }

    #[test]
    fn wrong_role_and_newer_version_are_refused() {
        let (host, spec, v) = setup();
        let facts = Facts::parse("k3s_version=v1.31.4+k3s1\nunit_k3s=active\n");
        assert!(
            decide(&host, &facts, &spec, &v)
                .unwrap_err()
                .contains("reset")
        );
        let facts = Facts::parse("k3s_version=v1.32.0+k3s1\nunit_k3s-agent=active\n");
        assert!(
            decide(&host, &facts, &spec, &v)
                .unwrap_err()
                .contains("never downgrades")
        );
    }

    #[test]
    fn older_version_upgrades() {
        let (host, spec, v) = setup();
        let facts = Facts::parse("k3s_version=v1.30.8+k3s1\nunit_k3s-agent=active\n");
        let d = decide(&host, &facts, &spec, &v).unwrap();
        assert_eq!(d.action, Action::Upgrade);
        assert!(d.why.contains("v1.30.8+k3s1"), "{}", d.why);
    }
}
