//! k3s auto-deploy HelmCharts as the cluster reports them: where the manifests go, the one
//! command that lists the charts, their helm install jobs and the namespaces, and the per-chart
//! state (deployed / pending / failed / missing) read from `kubectl get helmcharts -A -o json`
//! (helm.cattle.io/v1: the helm controller sets `status.jobName` and the `JobCreated` / `Failed`
//! conditions, https://docs.k3s.io/helm) and the Job: k3s's helm controller sets `Failed=False`
//! when it creates the job and never from the job's outcome, so only the Job tells whether the
//! install succeeded.

use serde::Deserialize;

use crate::shell::shell_quote;

/// Every manifest in this folder of a server is applied, and re-applied on change (k3s contract).
pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";

/// Markers between the JSON documents [`CHARTS_COMMAND`] prints.
const JOBS_MARKER: &str = "--- jobs";
const NAMESPACES_MARKER: &str = "--- namespaces";
const PODS_MARKER: &str = "--- pods";

/// Lists the HelmCharts, the jobs of kube-system (where the helm controller runs its install
/// jobs), the namespaces and the pods in one round trip (run with sudo on a server: the admin
/// kubeconfig is 0600). The chart list holds the values, tokens included: never log it.
pub const CHARTS_COMMAND: &str = "k3s kubectl get helmcharts -A -o json && echo '--- jobs' \
     && k3s kubectl get jobs -n kube-system -o json && echo '--- namespaces' \
     && k3s kubectl get namespaces -o json && echo '--- pods' \
     && k3s kubectl get pods -A -o json";

/// How many failed runs of a chart's helm install job make it `failed`. k3s retries the job
/// (backoffLimit 1000, the kubelet's back-off 10 s doubling to 5 min between runs) and a first
/// failure is common on a fresh cluster (the API or the network not there yet), so one failed run
/// is not a verdict; three (about 30 s of back-off) with the same chart are.
pub const HELM_INSTALL_ATTEMPTS: u32 = 3;

/// How many of a container's last log lines edgeops reads to find why it fails.
const LOG_TAIL_LINES: u32 = 50;

/// Where one chart stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartState {
    /// The helm job was created, did not fail, and the target namespace exists.
    Deployed,
    /// Known to the cluster but not there yet; the text says what is awaited.
    Pending(String),
    /// The helm controller reports the install failed; its message.
    Failed(String),
    /// No HelmChart of that name: the manifest was not applied (yet).
    Missing,
}

impl ChartState {
    /// One word for tables: `deployed`, `pending`, `failed`, `missing`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Deployed => "deployed",
            Self::Pending(_) => "pending",
            Self::Failed(_) => "failed",
            Self::Missing => "missing",
        }
    }

    /// What to change, for the failures edgeops knows the cause of (`None` otherwise).
    pub fn hint(&self) -> Option<&'static str> {
        let Self::Failed(why) = self else {
            return None;
        };
        if why.contains("executor configuration is reserved") {
            Some(
                "the runner values hold settings GitLab keeps on the runner (tags, locked, \
                 run-untagged, ...): set them in [gitlab.runner] and leave them out of the \
                 runner values template",
            )
        } else if why.contains("runnerRegistrationToken") || why.contains("Registering runner") {
            Some(
                "registration tokens are disabled on current GitLab: give the chart the runner's \
                 glrt- token as runnerToken (the built-in runner values do)",
            )
        } else if why.contains("not found in") && why.contains("repository") {
            Some("pin a chart version the repository has, or none for its newest")
        } else {
            None
        }
    }

    /// Why it is not deployed (empty when it is).
    pub fn detail(&self) -> String {
        match self {
            Self::Deployed => String::new(),
            Self::Pending(why) | Self::Failed(why) => why.clone(),
            Self::Missing => {
                format!("no HelmChart in the cluster (manifest not applied from {MANIFESTS_DIR})")
            }
        }
    }
}

/// The charts and namespaces of a cluster, as [`CHARTS_COMMAND`] printed them.
#[derive(Debug, Clone, Default)]
pub struct ChartListing {
    charts: Vec<HelmChart>,
    jobs: Vec<Job>,
    namespaces: Vec<String>,
    pods: Vec<Pod>,
}

/// A container whose log says why a chart is not deployed: the helm install job's pod after a
/// failed run, or a pod of the release that is not ready (a runner that cannot register).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWatch {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub kind: WatchKind,
    /// Failed runs so far (restarts, or failed pods of the job).
    pub failures: u32,
}

/// Whose log a [`LogWatch`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// klipper-helm in the install job: helm's `Error:` line.
    HelmJob,
    /// A pod the chart installed: a `FATAL:` / `PANIC:` line (gitlab-runner's registration).
    ReleasePod,
}

impl LogWatch {
    /// The one command that prints the container's last lines (sudo on a server). For a
    /// container waiting in CrashLoopBackOff the kubelet serves its last run's log.
    pub fn command(&self) -> String {
        format!(
            "k3s kubectl logs -n {} {} -c {} --tail {LOG_TAIL_LINES}",
            shell_quote(&self.namespace),
            shell_quote(&self.pod),
            shell_quote(&self.container)
        )
    }

    /// The chart's state once the log is read: failed with the line that says why when the log
    /// is decisive (a runner's FATAL, or helm's error after [`HELM_INSTALL_ATTEMPTS`] runs),
    /// else still pending, with what the log says so far.
    pub fn verdict(&self, log: &str) -> ChartState {
        let lines: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let last_starting = |prefixes: &[&str]| {
            lines
                .iter()
                .rev()
                .find(|l| prefixes.iter().any(|p| l.starts_with(p)))
                .map(|l| (*l).to_owned())
        };
        let where_ = format!("{}/{}", self.namespace, self.pod);
        match self.kind {
            WatchKind::HelmJob => {
                let reason = last_starting(&["Error:", "ERROR:"])
                    .or_else(|| lines.last().map(|l| (*l).to_owned()));
                match reason {
                    Some(reason) if self.failures >= HELM_INSTALL_ATTEMPTS => {
                        ChartState::Failed(reason)
                    }
                    Some(reason) => ChartState::Pending(format!(
                        "the helm install job failed {} time(s) and k3s retries it ({where_}): {reason}",
                        self.failures
                    )),
                    None if self.failures >= HELM_INSTALL_ATTEMPTS => ChartState::Failed(format!(
                        "the helm install job failed {} times and its pod {where_} logged nothing",
                        self.failures
                    )),
                    None => ChartState::Pending(format!(
                        "the helm install job failed {} time(s) and k3s retries it ({where_})",
                        self.failures
                    )),
                }
            }
            WatchKind::ReleasePod => match last_starting(&["FATAL:", "PANIC:"]) {
                Some(reason) => ChartState::Failed(format!("pod {where_}: {reason}")),
                None if self.failures > 0 => ChartState::Pending(format!(
                    "pod {where_} is not ready (its container restarted {} time(s))",
                    self.failures
                )),
                None => ChartState::Pending(format!("pod {where_} is not ready yet")),
            },
        }
    }
}

/// A pod as `kubectl get pods -o json` lists it: what says whether it runs or keeps failing.
#[derive(Debug, Clone, Deserialize)]
struct Pod {
    metadata: PodMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Clone, Deserialize)]
struct PodMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    restart_count: u32,
    #[serde(default)]
    state: serde_json::Value,
}

impl Pod {
    fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn ready(&self) -> bool {
        self.status.phase.as_deref() == Some("Succeeded")
            || self
                .status
                .conditions
                .iter()
                .any(|c| c.kind == "Ready" && c.status == "True")
    }

    /// The first container and its failed runs: its restarts, plus the run that just ended
    /// when it now waits or has terminated.
    fn failures(&self) -> Option<(&str, u32)> {
        let c = self.status.container_statuses.first()?;
        let ended = c.state.get("waiting").is_some()
            || c.state
                .get("terminated")
                .and_then(|t| t.get("exitCode"))
                .and_then(serde_json::Value::as_i64)
                .is_some_and(|code| code != 0);
        Some((&c.name, c.restart_count + u32::from(ended)))
    }
}

/// A helm install Job as `kubectl get jobs -o json` lists it (batch/v1).
#[derive(Debug, Clone, Deserialize)]
struct Job {
    metadata: Meta,
    #[serde(default)]
    status: JobStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct JobStatus {
    #[serde(default)]
    succeeded: u32,
    #[serde(default)]
    failed: u32,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Named {
    metadata: Meta,
}

#[derive(Debug, Clone, Deserialize)]
struct HelmChart {
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    target_namespace: Option<String>,
    #[serde(default)]
    values_content: Option<String>,
    #[serde(flatten)]
    source: ChartSource,
}

/// Which chart a HelmChart installs (`spec.chart`, `spec.version`, `spec.repo`): what `plan`
/// and `status` show. Holds no values, so it is safe to print.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChartSource {
    #[serde(default)]
    pub chart: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
}

impl ChartSource {
    /// The source named by a rendered HelmChart manifest (`None` when it is not one).
    pub fn from_manifest(content: &str) -> Option<ChartSource> {
        #[derive(Deserialize)]
        struct Manifest {
            spec: ChartSource,
        }
        serde_yaml_ng::from_str::<Manifest>(content)
            .ok()
            .map(|m| m.spec)
    }

    /// `gitlab-runner 0.71.0 from https://charts.gitlab.io`; without a version helm installs
    /// the repository's newest release, and the text says so.
    pub fn describe(&self) -> String {
        let chart = self.chart.as_deref().unwrap_or("(no chart)");
        let version = match self.version.as_deref().filter(|v| !v.is_empty()) {
            Some(version) => version.to_owned(),
            None => "(newest)".to_owned(),
        };
        match self.repo.as_deref().filter(|r| !r.is_empty()) {
            Some(repo) => format!("{chart} {version} from {repo}"),
            None => format!("{chart} {version}"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    job_name: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    message: Option<String>,
}

/// The listing could not be read. Its text never quotes the JSON: the chart values hold tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChartListError {
    #[error("the output has no `{NAMESPACES_MARKER}` part")]
    NoNamespaces,
    #[error("the output has no `{JOBS_MARKER}` part")]
    NoJobs,
    #[error("the output has no `{PODS_MARKER}` part")]
    NoPods,
    #[error("cannot parse the {what} list: {reason}")]
    Parse { what: &'static str, reason: String },
}

impl ChartListing {
    /// Parse [`CHARTS_COMMAND`]'s output.
    pub fn parse(stdout: &str) -> Result<ChartListing, ChartListError> {
        let (stdout, pods) = stdout
            .split_once(&format!("\n{PODS_MARKER}\n"))
            .ok_or(ChartListError::NoPods)?;
        let pods: List<Pod> = serde_json::from_str(pods).map_err(|e| ChartListError::Parse {
            what: "pod",
            reason: e.to_string(),
        })?;
        let (rest, namespaces) = stdout
            .split_once(&format!("\n{NAMESPACES_MARKER}\n"))
            .ok_or(ChartListError::NoNamespaces)?;
        let (charts, jobs) = rest
            .split_once(&format!("\n{JOBS_MARKER}\n"))
            .ok_or(ChartListError::NoJobs)?;
        // serde_json's messages name a line and column, never the content around it.
        let charts: List<HelmChart> =
            serde_json::from_str(charts).map_err(|e| ChartListError::Parse {
                what: "HelmChart",
                reason: e.to_string(),
            })?;
        let jobs: List<Job> = serde_json::from_str(jobs).map_err(|e| ChartListError::Parse {
            what: "Job",
            reason: e.to_string(),
        })?;
        let namespaces: List<Named> =
            serde_json::from_str(namespaces).map_err(|e| ChartListError::Parse {
                what: "namespace",
                reason: e.to_string(),
            })?;
        Ok(ChartListing {
            charts: charts.items,
            jobs: jobs.items,
            namespaces: namespaces
                .items
                .into_iter()
                .map(|n| n.metadata.name)
                .collect(),
            pods: pods.items,
        })
    }

    fn find(&self, namespace: &str, name: &str) -> Option<&HelmChart> {
        self.charts.iter().find(|chart| {
            chart.metadata.name == name
                && chart.metadata.namespace.as_deref().unwrap_or("default") == namespace
        })
    }

    /// The `spec.valuesContent` the cluster holds for a chart, to tell whether it applied the
    /// manifest just written (holds secrets: compare, never print).
    pub fn values_content(&self, namespace: &str, name: &str) -> Option<&str> {
        self.find(namespace, name)?.spec.values_content.as_deref()
    }

    /// The chart, version and repository the cluster's HelmChart `name` names.
    pub fn source(&self, namespace: &str, name: &str) -> Option<&ChartSource> {
        Some(&self.find(namespace, name)?.spec.source)
    }

    /// The state of chart `name` in `namespace` (HelmCharts live in kube-system).
    pub fn state(&self, namespace: &str, name: &str) -> ChartState {
        let Some(chart) = self.find(namespace, name) else {
            return ChartState::Missing;
        };
        let condition = |kind: &str| chart.status.conditions.iter().find(|c| c.kind == kind);
        if let Some(failed) = condition("Failed").filter(|c| c.status == "True") {
            return ChartState::Failed(
                failed
                    .message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "the helm install job failed".to_owned()),
            );
        }
        let job_created = chart.status.job_name.is_some()
            && condition("JobCreated").is_some_and(|c| c.status == "True");
        if !job_created {
            return ChartState::Pending("the helm controller has not created its job yet".into());
        }
        if condition("Failed").is_none_or(|c| c.status != "False") {
            return ChartState::Pending("the helm install job has not finished".into());
        }
        let job_name = chart.status.job_name.as_deref().unwrap_or_default();
        let Some(job) = self.jobs.iter().find(|job| {
            job.metadata.name == job_name
                && job.metadata.namespace.as_deref().unwrap_or("default") == namespace
        }) else {
            return ChartState::Pending(format!("the helm install job {job_name} does not exist"));
        };
        if job.status.succeeded == 0 {
            if let Some(failed) = job
                .status
                .conditions
                .iter()
                .find(|c| c.kind == "Failed" && c.status == "True")
            {
                return ChartState::Failed(
                    failed
                        .message
                        .clone()
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| format!("the helm install job {job_name} failed")),
                );
            }
            let failures = self
                .watch(namespace, name)
                .map_or(job.status.failed, |watch| watch.failures);
            if failures > 0 {
                // k3s retries (backoffLimit 1000): the reason is only in the job pod's log.
                return ChartState::Pending(format!(
                    "the helm install job failed {failures} time(s) and is retrying; its reason: \
                     k3s kubectl logs -n {namespace} job/{job_name}"
                ));
            }
            return ChartState::Pending("the helm install job has not finished".into());
        }
        let target = chart.spec.target_namespace.as_deref().unwrap_or(namespace);
        if !self.namespaces.iter().any(|ns| ns == target) {
            return ChartState::Pending(format!("namespace {target} does not exist yet"));
        }
        if let Some(pod) = self.release_pods(target, name).find(|pod| !pod.ready()) {
            return ChartState::Pending(format!(
                "pod {target}/{} is not ready yet",
                pod.metadata.name
            ));
        }
        ChartState::Deployed
    }

    /// The pods a chart's release made: helm charts label them `release` (gitlab-runner) or
    /// `app.kubernetes.io/instance` (gitlab-agent) with the release name, which k3s's helm
    /// controller makes the HelmChart's name.
    fn release_pods<'a>(&'a self, target: &'a str, name: &'a str) -> impl Iterator<Item = &'a Pod> {
        self.pods.iter().filter(move |pod| {
            pod.namespace() == target
                && ["release", "app.kubernetes.io/instance"]
                    .iter()
                    .any(|label| pod.metadata.labels.get(*label).is_some_and(|v| v == name))
        })
    }

    /// Whose log says why chart `name` is not deployed, when the cluster shows a container that
    /// failed (the install job's) or a pod of the release that is not ready; `None` otherwise.
    pub fn watch(&self, namespace: &str, name: &str) -> Option<LogWatch> {
        let chart = self.find(namespace, name)?;
        let job_name = chart.status.job_name.as_deref()?;
        let job = self.jobs.iter().find(|job| {
            job.metadata.name == job_name
                && job.metadata.namespace.as_deref().unwrap_or("default") == namespace
        });
        if job.is_none_or(|job| job.status.succeeded == 0) {
            let failed_pods = job.map_or(0, |job| job.status.failed);
            let pod = self
                .pods
                .iter()
                .filter(|pod| {
                    pod.namespace() == namespace
                        && pod.metadata.labels.get("job-name").map(String::as_str) == Some(job_name)
                })
                .filter_map(|pod| pod.failures().map(|(c, n)| (pod, c, n)))
                .max_by_key(|(_, _, n)| *n)?;
            let failures = pod.2 + failed_pods;
            return (failures > 0).then(|| LogWatch {
                namespace: namespace.to_owned(),
                pod: pod.0.metadata.name.clone(),
                container: pod.1.to_owned(),
                kind: WatchKind::HelmJob,
                failures,
            });
        }
        let target = chart.spec.target_namespace.as_deref().unwrap_or(namespace);
        let pod = self.release_pods(target, name).find(|pod| !pod.ready())?;
        let (container, failures) = pod.failures()?;
        Some(LogWatch {
            namespace: target.to_owned(),
            pod: pod.metadata.name.clone(),
            container: container.to_owned(),
            kind: WatchKind::ReleasePod,
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A succeeded helm install job of chart `a` / `gitlab-runner` in kube-system.
    const JOBS: &str = r#"{"metadata":{"name":"helm-install-gitlab-runner","namespace":"kube-system"},
        "status":{"succeeded":1}},
        {"metadata":{"name":"helm-install-a","namespace":"kube-system"},"status":{"succeeded":1}}"#;

    fn listing(charts: &str, namespaces: &[&str]) -> ChartListing {
        listing_with_jobs(charts, JOBS, namespaces)
    }

    fn listing_with_jobs(charts: &str, jobs: &str, namespaces: &[&str]) -> ChartListing {
        listing_with_pods(charts, jobs, namespaces, "")
    }

    fn listing_with_pods(
        charts: &str,
        jobs: &str,
        namespaces: &[&str],
        pods: &str,
    ) -> ChartListing {
        let ns: Vec<String> = namespaces
            .iter()
            .map(|n| format!(r#"{{"metadata":{{"name":"{n}"}}}}"#))
            .collect();
        let text = format!(
            "{{\"items\":[{charts}]}}\n--- jobs\n{{\"items\":[{jobs}]}}\n--- namespaces\n{{\"items\":[{}]}}\n--- pods\n{{\"items\":[{pods}]}}\n",
            ns.join(",")
        );
        ChartListing::parse(&text)
            .map_err(|e| e.to_string())
            .unwrap()
    }

    const DEPLOYED: &str = r#"{"metadata":{"name":"gitlab-runner","namespace":"kube-system"},
        "spec":{"targetNamespace":"gitlab-runner","valuesContent":"x: 1\n"},
        "status":{"jobName":"helm-install-gitlab-runner","conditions":[
          {"type":"JobCreated","status":"True"},{"type":"Failed","status":"False","message":""}]}}"#;

    #[test]
    fn deployed_needs_job_no_failure_and_namespace() {
        let l = listing(DEPLOYED, &["kube-system", "gitlab-runner"]);
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Deployed
        );
        assert_eq!(
            l.values_content("kube-system", "gitlab-runner"),
            Some("x: 1\n")
        );
        let l = listing(DEPLOYED, &["kube-system"]);
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Pending("namespace gitlab-runner does not exist yet".into())
        );
    }

    #[test]
    fn missing_pending_and_failed() {
        let l = listing(DEPLOYED, &["gitlab-runner"]);
        assert_eq!(
            l.state("kube-system", "gitlab-agent-x"),
            ChartState::Missing
        );
        assert_eq!(l.state("default", "gitlab-runner"), ChartState::Missing);
        let pending =
            r#"{"metadata":{"name":"a","namespace":"kube-system"},"spec":{},"status":{}}"#;
        let l = listing(pending, &["kube-system"]);
        assert_eq!(l.state("kube-system", "a").word(), "pending");
        let failed = r#"{"metadata":{"name":"a","namespace":"kube-system"},"spec":{},
            "status":{"jobName":"helm-install-a","conditions":[{"type":"JobCreated","status":"True"},
            {"type":"Failed","status":"True","message":"Error: INSTALLATION FAILED: boom"}]}}"#;
        let l = listing(failed, &["kube-system"]);
        assert_eq!(
            l.state("kube-system", "a"),
            ChartState::Failed("Error: INSTALLATION FAILED: boom".into())
        );
    }

    #[test]
    fn source_is_read_from_the_cluster_and_from_a_manifest() {
        let chart = r#"{"metadata":{"name":"gitlab-runner","namespace":"kube-system"},
            "spec":{"repo":"https://charts.gitlab.io","chart":"gitlab-runner","version":"0.71.0",
            "valuesContent":"runnerToken: glrt-secret\n"},"status":{}}"#;
        let l = listing(chart, &["kube-system"]);
        let source = l.source("kube-system", "gitlab-runner").unwrap();
        assert_eq!(
            source.describe(),
            "gitlab-runner 0.71.0 from https://charts.gitlab.io"
        );
        assert!(l.source("kube-system", "other").is_none());
        let manifest = "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: a\n\
                        spec:\n  repo: \"https://charts.gitlab.io\"\n  chart: \"gitlab-agent\"\n\
                        \x20 valuesContent: |\n    config:\n      token: glagent-secret\n";
        let source = ChartSource::from_manifest(manifest).unwrap();
        assert_eq!(
            source.describe(),
            "gitlab-agent (newest) from https://charts.gitlab.io"
        );
        assert!(!source.describe().contains("secret"));
        assert!(ChartSource::from_manifest("not: [a manifest").is_none());
    }

    #[test]
    fn a_failed_install_job_keeps_the_charts_reason() {
        let failed = r#"{"metadata":{"name":"gitlab-runner","namespace":"kube-system"},"spec":{},
            "status":{"jobName":"helm-install-gitlab-runner","conditions":[
            {"type":"JobCreated","status":"True"},
            {"type":"Failed","status":"True","message":"FATAL: Runner configuration other than name and executor configuration is reserved"}]}}"#;
        let l = listing(failed, &["kube-system", "gitlab-runner"]);
        let state = l.state("kube-system", "gitlab-runner");
        assert_eq!(state.word(), "failed");
        assert!(
            state
                .detail()
                .starts_with("FATAL: Runner configuration other"),
            "{}",
            state.detail()
        );
        assert!(state.hint().unwrap().contains("[gitlab.runner]"));
        assert_eq!(ChartState::Failed("boom".into()).hint(), None);
        assert_eq!(ChartState::Deployed.hint(), None);
    }

    #[test]
    fn only_a_succeeded_job_makes_a_chart_deployed() {
        // What k3s's helm controller shows for a failing install: Failed=False on the chart,
        // the Job retrying.
        let retrying = r#"{"metadata":{"name":"helm-install-gitlab-runner","namespace":"kube-system"},
            "status":{"active":1,"failed":3}}"#;
        let l = listing_with_jobs(DEPLOYED, retrying, &["kube-system", "gitlab-runner"]);
        let state = l.state("kube-system", "gitlab-runner");
        assert_eq!(state.word(), "pending");
        assert!(
            state.detail().contains("failed 3 time(s)"),
            "{}",
            state.detail()
        );
        assert!(
            state
                .detail()
                .contains("k3s kubectl logs -n kube-system job/helm-install-gitlab-runner"),
            "{}",
            state.detail()
        );
        let given_up = r#"{"metadata":{"name":"helm-install-gitlab-runner","namespace":"kube-system"},
            "status":{"failed":1001,"conditions":[{"type":"Failed","status":"True",
            "reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#;
        let l = listing_with_jobs(DEPLOYED, given_up, &["kube-system", "gitlab-runner"]);
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Failed("Job has reached the specified backoff limit".into())
        );
        let running = r#"{"metadata":{"name":"helm-install-gitlab-runner","namespace":"kube-system"},
            "status":{"active":1}}"#;
        let l = listing_with_jobs(DEPLOYED, running, &["kube-system", "gitlab-runner"]);
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Pending("the helm install job has not finished".into())
        );
        let l = listing_with_jobs(DEPLOYED, "", &["kube-system", "gitlab-runner"]);
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Pending(
                "the helm install job helm-install-gitlab-runner does not exist".into()
            )
        );
    }

    #[test]
    fn errors_never_quote_the_json() {
        let err = ChartListing::parse(
            "{\"items\":[{\"secret\": glrt-abc}]}\n--- jobs\n{}\n--- namespaces\n{}\n--- pods\n{}",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ChartListError::Parse {
                what: "HelmChart",
                ..
            }
        ));
        assert!(!err.to_string().contains("glrt-abc"), "{err}");
        assert!(matches!(
            ChartListing::parse("{}\n--- namespaces\n{}\n--- pods\n{}"),
            Err(ChartListError::NoJobs)
        ));
        assert!(matches!(
            ChartListing::parse("{}\n--- pods\n{}"),
            Err(ChartListError::NoNamespaces)
        ));
        assert!(matches!(
            ChartListing::parse("{}"),
            Err(ChartListError::NoPods)
        ));
    }

    /// The install job's pod as k3s shows a failing install: restartPolicy OnFailure, the
    /// container waiting in CrashLoopBackOff after its runs.
    fn job_pod(restarts: u32, state: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"helm-install-gitlab-runner-x7k2p","namespace":"kube-system",
            "labels":{{"job-name":"helm-install-gitlab-runner"}}}},
            "status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"False"}}],
            "containerStatuses":[{{"name":"helm","restartCount":{restarts},"state":{state}}}]}}}}"#
        )
    }

    const RETRYING_JOB: &str = r#"{"metadata":{"name":"helm-install-gitlab-runner","namespace":"kube-system"},
        "status":{"active":1}}"#;

    #[test]
    fn a_crash_looping_install_job_is_failed_after_the_attempts_limit_with_helms_error() {
        let waiting = r#"{"waiting":{"reason":"CrashLoopBackOff"}}"#;
        let log = "+ helm_v3 install gitlab-runner\nError: INSTALLATION FAILED: chart \"gitlab-runner\" \
                   version \"9.9.9\" not found in https://charts.gitlab.io repository\n";
        // First failed run: pending, with helm's line, not yet a verdict.
        let l = listing_with_pods(
            DEPLOYED,
            RETRYING_JOB,
            &["kube-system"],
            &job_pod(0, waiting),
        );
        let watch = l.watch("kube-system", "gitlab-runner").unwrap();
        assert_eq!(watch.kind, WatchKind::HelmJob);
        assert_eq!(watch.failures, 1);
        assert_eq!(
            watch.command(),
            "k3s kubectl logs -n kube-system helm-install-gitlab-runner-x7k2p -c helm --tail 50"
        );
        let first = watch.verdict(log);
        assert_eq!(first.word(), "pending");
        assert!(
            first.detail().contains("failed 1 time(s)"),
            "{}",
            first.detail()
        );
        // Running its third run after two failures: still pending.
        let running = r#"{"running":{"startedAt":"2026-12-04T14:00:00Z"}}"#;
        let l = listing_with_pods(
            DEPLOYED,
            RETRYING_JOB,
            &["kube-system"],
            &job_pod(2, running),
        );
        assert_eq!(l.watch("kube-system", "gitlab-runner").unwrap().failures, 2);
        // The third run failed: failed, the reason is helm's error line.
        let l = listing_with_pods(
            DEPLOYED,
            RETRYING_JOB,
            &["kube-system"],
            &job_pod(2, waiting),
        );
        let watch = l.watch("kube-system", "gitlab-runner").unwrap();
        assert_eq!(watch.failures, HELM_INSTALL_ATTEMPTS);
        let verdict = watch.verdict(log);
        assert_eq!(
            verdict,
            ChartState::Failed(
                "Error: INSTALLATION FAILED: chart \"gitlab-runner\" version \"9.9.9\" not found in \
                 https://charts.gitlab.io repository"
                    .into()
            )
        );
        assert!(verdict.hint().unwrap().contains("pin a chart version"));
    }

    /// A pod of the runner release, not ready, its container `state` after `restarts`.
    fn runner_pod(restarts: u32, state: &str, ready: bool) -> String {
        format!(
            r#"{{"metadata":{{"name":"gitlab-runner-6d9f-abcde","namespace":"gitlab-runner",
            "labels":{{"app":"gitlab-runner","release":"gitlab-runner"}}}},
            "status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"{}"}}],
            "containerStatuses":[{{"name":"gitlab-runner","restartCount":{restarts},"state":{state}}}]}}}}"#,
            if ready { "True" } else { "False" }
        )
    }

    #[test]
    fn a_runner_pod_that_cannot_register_fails_the_chart_with_the_runners_fatal_line() {
        let running = r#"{"running":{"startedAt":"2026-12-04T14:00:00Z"}}"#;
        let pods = runner_pod(0, running, false);
        let l = listing_with_pods(DEPLOYED, JOBS, &["kube-system", "gitlab-runner"], &pods);
        // The install succeeded, the release's pod is not ready: pending until its log says why.
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Pending(
                "pod gitlab-runner/gitlab-runner-6d9f-abcde is not ready yet".into()
            )
        );
        let watch = l.watch("kube-system", "gitlab-runner").unwrap();
        assert_eq!(watch.kind, WatchKind::ReleasePod);
        assert_eq!(watch.namespace, "gitlab-runner");
        assert_eq!(watch.container, "gitlab-runner");
        // Registering, nothing decisive yet.
        assert_eq!(
            watch
                .verdict("Registration attempt 1 of 30\nRuntime platform arch=amd64\n")
                .word(),
            "pending"
        );
        let fatal = "Registration attempt 2 of 30\nRuntime platform arch=amd64\nFATAL: Runner \
                     configuration other than name and executor configuration is reserved \
                     (specifically --locked, ...)\n";
        let verdict = watch.verdict(fatal);
        assert_eq!(verdict.word(), "failed");
        assert!(
            verdict.detail().starts_with(
                "pod gitlab-runner/gitlab-runner-6d9f-abcde: FATAL: Runner configuration other"
            ),
            "{}",
            verdict.detail()
        );
        assert!(verdict.hint().unwrap().contains("[gitlab.runner]"));
        // A ready runner pod: deployed, nothing to read.
        let l = listing_with_pods(
            DEPLOYED,
            JOBS,
            &["kube-system", "gitlab-runner"],
            &runner_pod(0, running, true),
        );
        assert_eq!(
            l.state("kube-system", "gitlab-runner"),
            ChartState::Deployed
        );
        assert_eq!(l.watch("kube-system", "gitlab-runner"), None);
    }
}
