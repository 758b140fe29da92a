//! Normal or degraded, with hysteresis: the agent degrades once the journal
//! has been unreachable for `enter_after`, and returns to normal once it has
//! been reachable again for `exit_after`, so a blip does not flap.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The agent's operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Degraded,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Degraded => "degraded",
        }
    }
}

/// The mode and since when the agent has been in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeState {
    pub mode: Mode,
    pub since: Instant,
    /// Changes of mode so far.
    pub transitions: u64,
}

#[derive(Debug)]
struct Inner {
    connected: bool,
    /// When `connected` last changed.
    changed_at: Instant,
    state: ModeState,
}

/// Tracks the journal's reachability and derives the mode from it.
#[derive(Debug)]
pub struct ModeTracker {
    enter_after: Duration,
    exit_after: Duration,
    inner: Mutex<Inner>,
}

impl ModeTracker {
    /// A tracker that has not seen the journal yet (as at start: the agent
    /// degrades if it does not connect within `enter_after`).
    pub fn new(enter_after: Duration, exit_after: Duration, now: Instant) -> Self {
        Self {
            enter_after,
            exit_after,
            inner: Mutex::new(Inner {
                connected: false,
                changed_at: now,
                state: ModeState {
                    mode: Mode::Normal,
                    since: now,
                    transitions: 0,
                },
            }),
        }
    }

    /// Records the journal's reachability at `at`.
    pub fn observe(&self, connected: bool, at: Instant) {
        let mut inner = self.inner.lock();
        if inner.connected != connected {
            // Settle the previous state first, so a long partition that ends
            // before anyone asked still counts as degraded.
            self.settle(&mut inner, at);
            inner.connected = connected;
            inner.changed_at = at;
        }
        self.settle(&mut inner, at);
    }

    /// The mode at `now`.
    pub fn state(&self, now: Instant) -> ModeState {
        let mut inner = self.inner.lock();
        self.settle(&mut inner, now);
        inner.state
    }

    fn settle(&self, inner: &mut Inner, now: Instant) {
        let held = now.saturating_duration_since(inner.changed_at);
        match (inner.state.mode, inner.connected) {
            (Mode::Normal, false) if held >= self.enter_after => {
                inner.state = ModeState {
                    mode: Mode::Degraded,
                    since: inner.changed_at + self.enter_after,
                    transitions: inner.state.transitions + 1,
                };
            }
            (Mode::Degraded, true) if held >= self.exit_after => {
                inner.state = ModeState {
                    mode: Mode::Normal,
                    since: inner.changed_at + self.exit_after,
                    transitions: inner.state.transitions + 1,
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTER: Duration = Duration::from_secs(3);
    const EXIT: Duration = Duration::from_secs(5);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn starts_normal_and_degrades_when_the_journal_never_answers() {
        let t0 = Instant::now();
        let m = ModeTracker::new(ENTER, EXIT, t0);
        assert_eq!(m.state(t0 + s(2)).mode, Mode::Normal);
        let st = m.state(t0 + s(4));
        assert_eq!(st.mode, Mode::Degraded);
        assert_eq!(st.since, t0 + ENTER);
        assert_eq!(st.transitions, 1);
    }

    #[test]
    fn a_blip_shorter_than_enter_after_changes_nothing() {
        let t0 = Instant::now();
        let m = ModeTracker::new(ENTER, EXIT, t0);
        m.observe(true, t0);
        for i in 0..10 {
            let at = t0 + s(10 * i + 1);
            m.observe(false, at);
            assert_eq!(m.state(at + s(2)).mode, Mode::Normal);
            m.observe(true, at + s(2));
        }
        assert_eq!(m.state(t0 + s(200)).mode, Mode::Normal);
        assert_eq!(m.state(t0 + s(200)).transitions, 0);
    }

    #[test]
    fn degrades_after_enter_after_and_recovers_after_exit_after() {
        let t0 = Instant::now();
        let m = ModeTracker::new(ENTER, EXIT, t0);
        m.observe(true, t0);
        m.observe(false, t0 + s(10));
        assert_eq!(m.state(t0 + s(12)).mode, Mode::Normal);
        assert_eq!(m.state(t0 + s(13)).mode, Mode::Degraded);
        m.observe(true, t0 + s(20));
        // Connected again, but not for long enough.
        assert_eq!(m.state(t0 + s(24)).mode, Mode::Degraded);
        // A flap back restarts the exit timer.
        m.observe(false, t0 + s(24));
        m.observe(true, t0 + s(24) + Duration::from_millis(100));
        assert_eq!(m.state(t0 + s(28)).mode, Mode::Degraded);
        let st = m.state(t0 + s(30));
        assert_eq!(st.mode, Mode::Normal);
        assert_eq!(st.transitions, 2);
    }

    #[test]
    fn a_partition_seen_only_after_it_ended_still_counts() {
        let t0 = Instant::now();
        let m = ModeTracker::new(ENTER, EXIT, t0);
        m.observe(true, t0);
        m.observe(false, t0 + s(1));
        // Nobody asked during the partition; the reconnect settles it first.
        m.observe(true, t0 + s(10));
        let st = m.state(t0 + s(11));
        assert_eq!(st.mode, Mode::Degraded);
        assert_eq!(st.since, t0 + s(4));
    }
}
