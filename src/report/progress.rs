//! The one live-progress renderer on stderr, for every command: with a terminal, indicatif bars
//! (one per phase with host counts, a spinner per host at work, failures printed as they
//! happen); without one, plain lines for per-host results; or nothing (`--quiet`, JSON, or a
//! one-shot command off a terminal). It takes the run's [`Progress`] events and the fleet's
//! connection events alike, and lets streamed output print above its bars.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Observer, Progress};
use crate::fleet::{Event, Reporter};

/// What a command shows while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Nothing,
    /// A line per phase and per host result (logs, pipes, `-v`).
    Lines,
    /// Live bars (a terminal).
    Bars,
}

pub struct ProgressView {
    mode: Mode,
}

enum Mode {
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
    pub fn new(show: Show) -> ProgressView {
        let mode = match show {
            Show::Nothing => Mode::Off,
            Show::Lines => Mode::Lines,
            Show::Bars => Mode::Bars(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                state: Mutex::new(BarState::default()),
            }),
        };
        ProgressView { mode }
    }

    /// Run `write` (output printed while the bars are live) with the bars out of the way, so
    /// they are redrawn below the text.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        match &self.mode {
            Mode::Bars(bars) => bars.multi.suspend(write),
            _ => write(),
        }
    }

    /// Clear whatever is still drawn.
    pub fn finish(&self) {
        if let Mode::Bars(bars) = &self.mode {
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
            Mode::Off => {}
            Mode::Lines => lines_event(event),
            Mode::Bars(bars) => bars.event(event),
        }
    }
}

/// The fleet's own events (connecting, a one-shot command over every host) as progress.
impl Reporter for ProgressView {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Begin { label, hosts } => Observer::event(
                self,
                &Progress::PhaseStart {
                    phase: label,
                    hosts: *hosts,
                },
            ),
            Event::Finished { host, ok } => Observer::event(
                self,
                &Progress::HostDone {
                    phase: "",
                    host,
                    ok: *ok,
                    detail: "",
                },
            ),
            Event::End { label } => Observer::event(self, &Progress::PhaseEnd { phase: label }),
            Event::Retrying { host, attempt, .. } => {
                if let Mode::Bars(bars) = &self.mode {
                    let state = bars.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(bar) = &state.phase {
                        bar.set_message(format!("retry {host} #{attempt}"));
                    }
                }
            }
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
