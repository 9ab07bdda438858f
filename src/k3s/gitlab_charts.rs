//! The HelmCharts edgeops deploys for GitLab through k3s's auto-deploy folder: their names,
//! the manifests of the rendered files and where they go, the values a written manifest
//! carries (to recognise it once the cluster applied it), and what a chart row says of one.

use crate::inventory::GitLab;
use crate::render::gitlab::{GitLabFiles, RUNNER_RELEASE, agent_release};

use super::helmcharts::{ChartListing, ChartSource, ChartState, MANIFESTS_DIR};

/// Namespace k3s's helm controller watches for HelmCharts (the templates put them there).
pub const HELMCHART_NAMESPACE: &str = "kube-system";

/// A HelmChart manifest edgeops owns in the auto-deploy folder.
pub struct Manifest {
    /// HelmChart name (in kube-system).
    pub chart: String,
    pub path: String,
    pub content: String,
}

/// The manifests of the rendered `files`, where they go.
pub fn manifests(gitlab: &GitLab, files: &GitLabFiles) -> Vec<Manifest> {
    let agent = agent_release(&gitlab.agent_name);
    let mut list = vec![Manifest {
        path: format!("{MANIFESTS_DIR}/{agent}.yaml"),
        chart: agent,
        content: files.agent_helmchart.clone(),
    }];
    if let Some(runner) = &files.runner {
        list.push(Manifest {
            chart: RUNNER_RELEASE.to_owned(),
            path: format!("{MANIFESTS_DIR}/{RUNNER_RELEASE}.yaml"),
            content: runner.helmchart.clone(),
        });
    }
    list
}

/// The chart names edgeops deploys for `gitlab` (HelmCharts in kube-system).
pub fn chart_names(gitlab: &GitLab) -> Vec<String> {
    let mut names = vec![agent_release(&gitlab.agent_name)];
    if gitlab.runner.enabled {
        names.push(RUNNER_RELEASE.to_owned());
    }
    names
}

/// A chart row's detail (`up`, `status`): the chart the cluster holds, then why it is not deployed.
pub fn chart_detail(listing: &ChartListing, name: &str, state: &ChartState) -> String {
    let source = listing
        .source(HELMCHART_NAMESPACE, name)
        .map(ChartSource::describe);
    match (source, state.detail()) {
        (Some(source), why) if why.is_empty() => source,
        (Some(source), why) => format!("{source}: {why}"),
        (None, why) => why,
    }
}

/// `spec.valuesContent` of a rendered manifest, to recognise it once the cluster applied it.
pub fn manifest_values(content: &str) -> Option<String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(content).ok()?;
    Some(doc["spec"]["valuesContent"].as_str()?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::k3s::test_inventory::pi_inventory;
    use crate::render::Renderer;
    use crate::render::gitlab::{ClusterFacts, GitLabTokens, render_gitlab};

    #[test]
    fn manifest_values_are_read_back_from_the_rendered_manifest() {
        let inventory = pi_inventory();
        let gitlab = inventory.gitlab.as_ref().unwrap();
        let files = render_gitlab(
            &Renderer::builtin(),
            "pi-lab",
            gitlab,
            &GitLabTokens {
                agent: Some(SecretString::from("glagent-0123456789abcdef")),
                runner: Some(SecretString::from("glrt-0123456789abcdef")),
            },
            &ClusterFacts::default(),
            None,
        )
        .unwrap();
        let list = manifests(gitlab, &files);
        let values = manifest_values(&list[0].content).unwrap();
        assert_eq!(values, files.agent_values.trim());
        assert!(list[0].path.starts_with(MANIFESTS_DIR));
    }
}
