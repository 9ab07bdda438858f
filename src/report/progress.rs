//! The indicatif progress bar, fed by fleet events. The CLI creates it only when stderr is a
//! terminal, so pipes and logs never see escape codes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fleet::{Event, Reporter};

/// One bar per phase: position = hosts done, message = the phase and failures so far.
pub struct ProgressReporter {
    bar: ProgressBar,
    failures: std::sync::atomic::AtomicUsize,
}

impl ProgressReporter {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:12} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        ProgressReporter {
            bar,
            failures: Default::default(),
        }
    }

    /// The bar when `show` (a terminal), and the reporter to give the fleet: the bar, or silence.
    pub fn when(
        show: bool,
    ) -> (
        Option<std::sync::Arc<ProgressReporter>>,
        std::sync::Arc<dyn Reporter>,
    ) {
        match show {
            true => {
                let bar = std::sync::Arc::new(ProgressReporter::new());
                (Some(bar.clone()), bar)
            }
            false => (None, std::sync::Arc::new(crate::fleet::Silent)),
        }
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for ProgressReporter {
    fn event(&self, event: &Event<'_>) {
        use std::sync::atomic::Ordering;
        match event {
            Event::Begin { label, hosts } => {
                self.failures.store(0, Ordering::Relaxed);
                self.bar.reset();
                self.bar.set_length(*hosts as u64);
                self.bar.set_message(label.to_string());
            }
            Event::Retrying { host, attempt, .. } => {
                self.bar.set_message(format!("retry {host} #{attempt}"));
            }
            Event::Finished { ok, .. } => {
                if !ok {
                    let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    self.bar.set_message(format!("{failed} failed"));
                }
                self.bar.inc(1);
            }
            Event::End { .. } => {}
        }
    }
}
