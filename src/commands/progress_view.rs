//! The live progress of a run's phases on stderr (bars on a terminal, lines otherwise).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{GlobalArgs, OutputFormat};
use crate::phases::{Observer, Progress};

/// Live progress on stderr: with a terminal, indicatif bars (one per phase with host counts, a
/// spinner per host at work, failures printed as they happen); without one, plain lines for
/// per-host results. Nothing in `--quiet` or JSON mode.
pub struct ProgressView {
    mode: ViewMode,
}

enum ViewMode {
    Off,
    Lines,
    Bars(Bars),
}

struct Bars {
    multi: MultiProgress,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    phase: Option<ProgressBar>,
    hosts: Vec<(String, ProgressBar)>,
}

impl ProgressView {
    pub fn new(global: &GlobalArgs) -> Arc<ProgressView> {
        let mode = if global.quiet || global.output == OutputFormat::Json {
            ViewMode::Off
        } else if std::io::stderr().is_terminal() && global.verbose == 0 {
            ViewMode::Bars(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                state: Mutex::new(BarState::default()),
            })
        } else {
            ViewMode::Lines
        };
        Arc::new(ProgressView { mode })
    }

    pub fn finish(&self) {
        if let ViewMode::Bars(bars) = &self.mode {
            let mut state = bars.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(bar) = state.phase.take() {
                bar.finish_and_clear();
            }
            for (_, bar) in state.hosts.drain(..) {
                bar.finish_and_clear();
            }
            let _ = bars.multi.clear();
        }
    }
}

impl Observer for ProgressView {
    fn event(&self, event: &Progress<'_>) {
        match &self.mode {
            ViewMode::Off => {}
            ViewMode::Lines => lines_event(event),
            ViewMode::Bars(bars) => bars.event(event),
        }
    }
}

fn lines_event(event: &Progress<'_>) {
    match event {
        Progress::PhaseStart { phase, hosts } if *hosts > 0 => {
            eprintln!(
                "-- {phase} ({hosts} host{})",
                if *hosts == 1 { "" } else { "s" }
            );
        }
        Progress::PhaseStart { phase, .. } => eprintln!("-- {phase}"),
        Progress::HostDone {
            host, ok, detail, ..
        } if !detail.is_empty() => {
            if *ok {
                eprintln!("   {host}: {detail}");
            } else {
                eprintln!("   {host}: FAILED: {detail}");
            }
        }
        Progress::Message { text } => eprintln!("   {text}"),
        _ => {}
    }
}

impl Bars {
    fn event(&self, event: &Progress<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Progress::PhaseStart { phase, hosts } => {
                if let Some(old) = state.phase.take() {
                    old.finish_and_clear();
                }
                let bar = self.multi.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:14} [{bar:30}] {pos}/{len} {elapsed}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(phase.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                state.phase = Some(bar);
            }
            Progress::HostStart { phase, host } => {
                let spinner = self.multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message(format!("{host}: {phase}"));
                spinner.enable_steady_tick(Duration::from_millis(120));
                state.hosts.push((host.to_string(), spinner));
            }
            Progress::HostDone {
                host, ok, detail, ..
            } => {
                if let Some(i) = state.hosts.iter().position(|(h, _)| h == host) {
                    let (_, spinner) = state.hosts.remove(i);
                    spinner.finish_and_clear();
                    self.multi.remove(&spinner);
                }
                if let Some(bar) = &state.phase {
                    bar.inc(1);
                }
                if !ok {
                    let why = if detail.is_empty() { "failed" } else { detail };
                    let _ = self.multi.println(format!("✗ {host}: {why}"));
                }
            }
            Progress::PhaseEnd { .. } => {
                if let Some(bar) = state.phase.take() {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Progress::Message { text } => {
                let _ = self.multi.println(format!("  {text}"));
            }
        }
    }
}
