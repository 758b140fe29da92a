//! Idle polling: a process on a CPU of its own keeps that CPU awake for a
//! short while after its runtime runs out of work.
//!
//! On a virtual machine an idle vCPU is halted, and the next message has to
//! wake it through the hypervisor: tens of microseconds before the first
//! instruction runs, on each crossing between Envoy and the ext_proc side,
//! and with the CPU's caches the colder for it. Under load the gaps between
//! two bursts of work are short. So while the runtime sleeps, and for at
//! most `budget` after it last went to sleep, a thread of the lowest
//! scheduling class (`SCHED_IDLE`: it runs only when no other thread of the
//! CPU wants to) spins. It never delays a request, the runtime's thread
//! preempts it the moment a message wakes it, and an idle process costs
//! nothing: the thread sleeps once `budget` passes without work. The same
//! trade as the hypervisor's own halt polling (KVM's `halt_poll_ns`) and
//! the spinning of Go's scheduler, made where it pays: the CPU that serves
//! Envoy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The runtime's side: its park hook tells the polling thread that the
/// runtime is about to sleep.
#[derive(Debug)]
pub struct IdlePoll {
    budget: Duration,
    epoch: Instant,
    /// When the runtime last went to sleep, in nanoseconds since `epoch`.
    parked_at: AtomicU64,
    /// The polling thread is asleep (or about to be) and needs a wake-up.
    asleep: AtomicBool,
    thread: Thread,
    /// The polling thread's id (for its entry in /proc).
    tid: i32,
}

impl IdlePoll {
    /// Starts the polling thread of a runtime whose idle gaps are polled
    /// for up to `budget`. An error when the thread cannot be started or
    /// put in the idle scheduling class (it must never compete with the
    /// runtime, so then there is no polling).
    pub fn start(budget: Duration) -> Result<Arc<Self>, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("idle-poll".into())
            .spawn(move || {
                let idle = thread_priority::set_thread_priority_and_policy(
                    thread_priority::thread_native_id(),
                    thread_priority::ThreadPriority::Min,
                    thread_priority::ThreadSchedulePolicy::Normal(
                        thread_priority::NormalThreadSchedulePolicy::Idle,
                    ),
                );
                if let Err(e) = idle {
                    let _ = tx.send(Err(format!("SCHED_IDLE refused: {e:?}")));
                    return;
                }
                let poll = Arc::new(IdlePoll {
                    budget,
                    epoch: Instant::now(),
                    parked_at: AtomicU64::new(0),
                    asleep: AtomicBool::new(false),
                    thread: std::thread::current(),
                    tid: rustix::thread::gettid().as_raw_nonzero().get(),
                });
                if tx.send(Ok(poll.clone())).is_ok() {
                    poll.spin();
                }
            })
            .map_err(|e| format!("cannot start its thread: {e}"))?;
        rx.recv().map_err(|_| "its thread stopped".to_string())?
    }

    /// How long after the runtime last went to sleep the CPU is kept awake.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The polling thread's id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Whether the polling thread sleeps (the runtime has had no work for
    /// longer than the budget).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }

    /// The runtime's `on_thread_park` hook: it is about to sleep.
    pub fn parked(&self) {
        self.parked_at.store(self.now(), Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn spin(&self) {
        let budget = u64::try_from(self.budget.as_nanos()).unwrap_or(u64::MAX);
        loop {
            // Runs only while the CPU has nothing else to do.
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            let since = self.parked_at.load(Ordering::SeqCst);
            if self.now().saturating_sub(since) > budget {
                self.asleep.store(true, Ordering::SeqCst);
                // A park in between has set a new time (and may have found
                // `asleep` still false): look again before sleeping.
                while self.asleep.load(Ordering::SeqCst)
                    && self.parked_at.load(Ordering::SeqCst) == since
                {
                    std::thread::park();
                }
                self.asleep.store(false, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's scheduling policy and CPU time in ticks, from
    /// /proc/self/task/TID/stat (fields 41, and 14 + 15).
    fn task_stat(tid: i32) -> (u64, u64) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The fields after the command name start with the 3rd.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let field = |n: usize| rest[n - 3].parse::<u64>().unwrap();
        (field(41), field(14) + field(15))
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        // Generous: the thread runs only when a CPU is otherwise idle.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn polls_in_the_idle_class_after_a_park_and_then_sleeps() {
        let poll = IdlePoll::start(Duration::from_millis(20)).unwrap();
        let (policy, _) = task_stat(poll.tid());
        assert_eq!(policy, 5, "SCHED_IDLE is policy 5");
        // Nothing parked yet since the start: it goes to sleep.
        wait_until("asleep", || poll.is_asleep());
        // Asleep it uses no CPU at all.
        let (_, before) = task_stat(poll.tid());
        std::thread::sleep(Duration::from_millis(300));
        let (_, after) = task_stat(poll.tid());
        assert_eq!(
            before, after,
            "an idle runtime's polling thread must not run"
        );
        // A park wakes it; it polls for the budget, then sleeps again.
        poll.parked();
        assert!(!poll.is_asleep());
        wait_until("asleep again", || poll.is_asleep());
    }

    #[test]
    fn parks_in_a_row_keep_it_polling() {
        let poll = IdlePoll::start(Duration::from_millis(500)).unwrap();
        wait_until("asleep", || poll.is_asleep());
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1500) {
            poll.parked();
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                !poll.is_asleep(),
                "asleep 5 ms after a park, with a 500 ms budget"
            );
        }
        wait_until("asleep after the last park", || poll.is_asleep());
    }

    #[test]
    fn the_default_follows_the_affinity_mask_and_the_runtime() {
        use crate::{DEFAULT_IDLE_POLL, OneCpu, idle_poll_budget};
        // Asked for: as asked, 0 being off.
        assert_eq!(idle_poll_budget(Some(0), OneCpu::Batch), None);
        assert_eq!(
            idle_poll_budget(Some(200), OneCpu::AnswerFirst),
            Some(Duration::from_micros(200))
        );
        // (The mask read is the calling thread's, this test's own.)
        let all = rustix::thread::sched_getaffinity(None).unwrap();
        let mut one = rustix::thread::CpuSet::new();
        one.set(rustix::thread::sched_getcpu());
        rustix::thread::sched_setaffinity(None, &one).unwrap();
        let pinned = (
            idle_poll_budget(None, OneCpu::Batch),
            idle_poll_budget(None, OneCpu::AnswerFirst),
        );
        rustix::thread::sched_setaffinity(None, &all).unwrap();
        assert_eq!(pinned, (Some(DEFAULT_IDLE_POLL), None));
        if all.count() > 1 {
            assert_eq!(idle_poll_budget(None, OneCpu::Batch), None);
        }
    }

    #[test]
    fn a_runtime_with_idle_polling_runs_tasks_and_timers() {
        let (rt, polling) =
            crate::runtime(crate::OneCpu::Batch, Some(Duration::from_micros(300))).unwrap();
        assert_eq!(polling, crate::IdlePolling::On(Duration::from_micros(300)));
        let got = rt.block_on(async {
            let task = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            task.await.unwrap()
        });
        assert_eq!(got, 7);
        let (_, off) = crate::runtime(crate::OneCpu::Batch, None).unwrap();
        assert_eq!(off, crate::IdlePolling::Off);
    }
}
