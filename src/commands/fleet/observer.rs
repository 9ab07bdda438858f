//! Progress of a fleet run on stderr: one line per phase and per host result, each prefixed
//! with its cluster, since many clusters' phases interleave (no bars: they would fight).

use std::sync::Arc;

use crate::phases::{Observer, Progress};

pub struct ClusterLines {
    cluster: String,
    show: bool,
}

impl ClusterLines {
    pub fn shared(cluster: &str, show: bool) -> Arc<dyn Observer> {
        Arc::new(ClusterLines {
            cluster: cluster.to_owned(),
            show,
        })
    }

    fn line(&self, event: &Progress<'_>) -> Option<String> {
        let c = &self.cluster;
        match event {
            Progress::PhaseStart { phase, hosts } if *hosts > 0 => Some(format!(
                "{c}: -- {phase} ({hosts} host{})",
                if *hosts == 1 { "" } else { "s" }
            )),
            Progress::PhaseStart { phase, .. } => Some(format!("{c}: -- {phase}")),
            Progress::HostDone {
                host, ok, detail, ..
            } if !detail.is_empty() => Some(if *ok {
                format!("{c}:    {host}: {detail}")
            } else {
                format!("{c}:    {host}: FAILED: {detail}")
            }),
            Progress::Message { text } => Some(format!("{c}:    {text}")),
            _ => None,
        }
    }
}

impl Observer for ClusterLines {
    fn event(&self, event: &Progress<'_>) {
        if self.show
            && let Some(line) = self.line(event)
        {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_names_its_cluster() {
        let view = ClusterLines {
            cluster: "berlin".into(),
            show: false,
        };
        assert_eq!(
            view.line(&Progress::PhaseStart {
                phase: "facts",
                hosts: 3
            })
            .as_deref(),
            Some("berlin: -- facts (3 hosts)")
        );
        assert_eq!(
            view.line(&Progress::HostDone {
                phase: "agents",
                host: "b-02",
                ok: false,
                detail: "unreachable"
            })
            .as_deref(),
            Some("berlin:    b-02: FAILED: unreachable")
        );
    }
}
