//! Rendering fan-out results for people and scripts: host-prefixed live output, `clush -b`-style
//! folded groups with compact host lists, the ok/failed/unreachable summary, JSON lines, and the
//! progress bar (only on a terminal). It never decides what runs.

mod progress;

pub use progress::{ProgressView, Show};

use std::io::Write;
use std::sync::Arc;

use crate::fleet::{HostError, HostResult};
use crate::ssh::{ExecOutput, Exit, OutputSink, Stream};

/// Longest unfinished line kept before it is printed anyway.
const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Writes a host's output line by line as `host: line`, stdout to stdout and stderr to stderr.
/// Lines are buffered per host so two hosts never interleave within a line.
pub struct PrefixedLines {
    host: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Printing goes through the live progress so its bars are redrawn below the text.
    progress: Arc<ProgressView>,
}

impl PrefixedLines {
    pub fn new(host: &str, progress: Arc<ProgressView>) -> Self {
        PrefixedLines {
            host: host.to_string(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            progress,
        }
    }

    fn emit(&self, stream: Stream, lines: &[u8]) {
        let mut text = Vec::with_capacity(lines.len() + 16);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(self.host.as_bytes());
            text.extend_from_slice(b": ");
            // Host output may hold terminal escapes: only text reaches the terminal.
            text.extend_from_slice(crate::sanitize::clean_bytes(line).as_bytes());
            if !line.ends_with(b"\n") {
                text.push(b'\n');
            }
        }
        let write = || match stream {
            Stream::Stdout => {
                let _ = std::io::stdout().lock().write_all(&text);
            }
            Stream::Stderr => {
                let _ = std::io::stderr().lock().write_all(&text);
            }
        };
        self.progress.suspend(write);
    }

    /// Print what is left without a final newline.
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(self.buffer(stream));
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }

    fn buffer(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

impl OutputSink for PrefixedLines {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let buffer = self.buffer(stream);
        buffer.extend_from_slice(data);
        if let Some(last_newline) = buffer.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = buffer.drain(..=last_newline).collect();
            self.emit(stream, &complete);
        } else if buffer.len() > MAX_PARTIAL_LINE {
            // A host that never prints a newline cannot grow this buffer without bound.
            let partial = std::mem::take(buffer);
            self.emit(stream, &partial);
        }
    }
}

/// `clush -b`: hosts with identical output are shown once, under a header listing them.
pub fn render_grouped(results: &[HostResult<ExecOutput>]) -> String {
    type Group<'a> = (&'a [u8], &'a [u8], bool, Vec<&'a str>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for result in results {
        let Ok(out) = &result.outcome else { continue };
        match groups.iter_mut().find(|(o, e, t, _)| {
            *o == out.stdout.as_slice() && *e == out.stderr.as_slice() && *t == out.truncated
        }) {
            Some((_, _, _, hosts)) => hosts.push(&result.host),
            None => groups.push((&out.stdout, &out.stderr, out.truncated, vec![&result.host])),
        }
    }
    let mut text = String::new();
    for (stdout, stderr, truncated, hosts) in groups {
        let header = format!(
            "{} ({})",
            crate::inventory::hostlist::fold(&hosts),
            hosts.len()
        );
        let rule = "-".repeat(header.chars().count().min(78));
        text.push_str(&format!("{rule}\n{header}\n{rule}\n"));
        for part in [stdout, stderr] {
            // Host output may hold terminal escapes: only text reaches the terminal.
            let part = crate::sanitize::clean_bytes(part);
            text.push_str(&part);
            if !part.is_empty() && !part.ends_with('\n') {
                text.push('\n');
            }
        }
        if truncated {
            text.push_str(&truncation_note());
            text.push('\n');
        }
    }
    text
}

/// Said wherever a command's kept output is shorter than what it printed.
pub fn truncation_note() -> String {
    format!(
        "[output truncated: only the first {} MiB of each stream were kept]",
        crate::ssh::MAX_OUTPUT_BYTES / (1024 * 1024)
    )
}

/// The one-word state of a host's result, shared by the summary and JSON.
pub fn status_of(outcome: &Result<ExecOutput, HostError>) -> &'static str {
    match outcome {
        Ok(out) if out.success() => "ok",
        Ok(_) => "failed",
        Err(HostError::Unreachable(_)) => "unreachable",
        Err(HostError::Ssh(e)) if e.is_retryable() => "unreachable",
        Err(HostError::Timeout(_))
        | Err(HostError::Ssh(crate::ssh::SshError::CommandTimeout { .. })) => "timeout",
        Err(HostError::Cancelled) => "cancelled",
        Err(_) => "failed",
    }
}

/// Counts and per-host reasons: `ok 48, failed 1, unreachable 1` then one line per problem.
pub fn render_summary(results: &[HostResult<ExecOutput>]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut problems = String::new();
    for result in results {
        let status = status_of(&result.outcome);
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
        if let Ok(out) = &result.outcome
            && out.truncated
        {
            problems.push_str(&format!("  {}: {}\n", result.host, truncation_note()));
        }
        match &result.outcome {
            Ok(out) if out.success() => {}
            Ok(out) => problems.push_str(&format!("  {}: failed: {}\n", result.host, out.exit)),
            Err(err) => problems.push_str(&format!(
                "  {}: {status}: {}\n",
                result.host,
                strip_host_prefix(&err.to_string(), &result.host)
            )),
        }
    }
    counts.sort_by_key(|(s, _)| match *s {
        "ok" => 0,
        "failed" => 1,
        "timeout" => 2,
        "unreachable" => 3,
        _ => 4,
    });
    let line = counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{line} ({} hosts)\n{problems}", results.len())
}

/// SSH errors start with the host name; the summary already prints it.
fn strip_host_prefix<'a>(message: &'a str, host: &str) -> &'a str {
    let message = message.strip_prefix("unreachable: ").unwrap_or(message);
    message
        .strip_prefix(host)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

/// One JSON document per host, for scripts.
pub fn json_line(result: &HostResult<ExecOutput>) -> String {
    let mut doc = serde_json::json!({
        "host": result.host,
        "status": status_of(&result.outcome),
    });
    match &result.outcome {
        Ok(out) => {
            doc["stdout"] = String::from_utf8_lossy(&out.stdout).into();
            doc["stderr"] = String::from_utf8_lossy(&out.stderr).into();
            if out.truncated {
                doc["truncated"] = true.into();
            }
            match &out.exit {
                Exit::Status(code) => doc["exit_code"] = (*code).into(),
                Exit::Signal { name, .. } => doc["signal"] = name.clone().into(),
                Exit::Unknown => {}
            }
        }
        Err(err) => doc["error"] = strip_host_prefix(&err.to_string(), &result.host).into(),
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, stdout: &str) -> HostResult<ExecOutput> {
        HostResult {
            host: host.into(),
            outcome: Ok(ExecOutput {
                stdout: stdout.as_bytes().to_vec(),
                stderr: vec![],
                exit: Exit::Status(0),
                truncated: false,
            }),
        }
    }

    #[test]
    fn host_output_reaches_the_report_without_control_characters() {
        let hostile = "ok\u{1b}]0;owned\u{7}\u{1b}[2J\rfake\n";
        let mut truncated = ok("h2", "cut");
        if let Ok(out) = &mut truncated.outcome {
            out.truncated = true;
        }
        let results = vec![ok("h1", hostile), truncated];
        let text = render_grouped(&results);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("ok]0;owned[2Jfake\n"), "{text}");
        assert!(text.contains("[output truncated"), "{text}");
        assert!(render_summary(&results).contains("h2: [output truncated"));
        assert_eq!(
            crate::engine::last_lines("a\u{1b}[31mred\nb\r\n", 3),
            "a[31mred | b"
        );
    }

    #[test]
    fn identical_outputs_fold_under_one_header() {
        let results = vec![
            ok("lab-02", "same\n"),
            ok("lab-03", "same\n"),
            ok("lab-01", "other"),
            ok("lab-04", "same\n"),
        ];
        assert_eq!(
            render_grouped(&results),
            "---------------\nlab-[02-04] (3)\n---------------\nsame\n\
             ----------\nlab-01 (1)\n----------\nother\n"
        );
    }

    /// `exec --group` headers use the inventory's fold, so they say what `check` says.
    #[test]
    fn group_headers_fold_hosts_as_check_does() {
        let names = ["n9", "n10", "n11", "db"];
        let results: Vec<_> = names.iter().map(|n| ok(n, "same\n")).collect();
        let folded = crate::inventory::hostlist::fold(&names);
        assert_eq!(folded, "n[9-11],db");
        assert!(
            render_grouped(&results).contains(&format!("\n{folded} (4)\n")),
            "{}",
            render_grouped(&results)
        );
    }

    #[test]
    fn summary_names_each_problem_host_once() {
        let mut failed = ok("b", "");
        if let Ok(out) = &mut failed.outcome {
            out.exit = Exit::Status(2);
        }
        let results = vec![
            ok("a", ""),
            failed,
            HostResult {
                host: "c".into(),
                outcome: Err(HostError::Unreachable(Arc::new(
                    crate::ssh::SshError::Connect {
                        host: "c".into(),
                        address: "10.0.0.3:22".into(),
                        reason: "Connection refused".into(),
                    },
                ))),
            },
        ];
        assert_eq!(
            render_summary(&results),
            "ok 1, failed 1, unreachable 1 (3 hosts)\n  b: failed: exit 2\n  \
             c: unreachable: cannot connect to 10.0.0.3:22: Connection refused\n"
        );
    }

    #[test]
    fn json_has_status_exit_code_and_streams() {
        let line = json_line(&ok("a", "hi\n"));
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["host"], "a");
        assert_eq!(doc["status"], "ok");
        assert_eq!(doc["exit_code"], 0);
        assert_eq!(doc["stdout"], "hi\n");
    }
}
