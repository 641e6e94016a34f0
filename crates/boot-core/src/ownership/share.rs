//! Work sharing for the ownership walk: a cold remap of a large volume is two system calls per entry
//! (a stat and a chown), so on a machine with more than one core the walk hands whole subdirectories to
//! other threads while they are idle.
//!
//! A subdirectory is handed over only after the walk that found it has opened it (without following
//! symlinks or crossing mounts) and checked it, exactly as it would before descending; the thread that
//! takes it walks it from that descriptor and never goes above it. Every thread keeps its own
//! descriptor budget, and the queue is short, so the process holds a bounded number of descriptors.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use super::DirId;

/// Subdirectories waiting for a thread, at most: each holds a descriptor.
const QUEUE_LIMIT: usize = 16;

/// An opened, checked subdirectory for another thread to walk.
pub(super) struct Task {
    pub fd: OwnedFd,
    pub id: DirId,
    /// In-container path, for log lines.
    pub path: Vec<u8>,
}

#[derive(Default)]
struct State {
    queue: Vec<Task>,
    /// Threads that are walking (a task or the target itself).
    busy: usize,
}

pub(super) struct Share {
    state: Mutex<State>,
    ready: Condvar,
    /// Threads waiting for a task, readable without the lock on the hot path.
    idle: AtomicUsize,
    /// A walk gave up on the target (a refused chown, the tree moved): every thread stops.
    abandoned: AtomicBool,
    /// The refused-chown warning has been printed (once per target, as without sharing).
    refusal_told: AtomicBool,
    /// Entries checked by finished tasks, for the progress line.
    checked_by_tasks: AtomicU64,
}

impl Share {
    /// Sharing for a walk whose first thread (the caller) is already busy.
    pub fn new() -> Share {
        Share {
            state: Mutex::new(State {
                queue: Vec::new(),
                busy: 1,
            }),
            ready: Condvar::new(),
            idle: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
            refusal_told: AtomicBool::new(false),
            checked_by_tasks: AtomicU64::new(0),
        }
    }

    /// Whether a thread is waiting for work (a hint: `offer` decides).
    pub fn wants_work(&self) -> bool {
        self.idle.load(Ordering::Relaxed) > 0 && !self.abandoned()
    }

    /// Queues `task` for an idle thread; gives it back when the queue is full.
    pub fn offer(&self, task: Task) -> Result<(), Task> {
        let mut st = self.lock();
        if st.queue.len() >= QUEUE_LIMIT || self.abandoned() {
            return Err(task);
        }
        st.queue.push(task);
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// The next task for a thread that has finished its work (`was_busy`) or is starting; `None` when
    /// every thread is done and nothing is queued, or the walk was abandoned.
    pub fn next(&self, was_busy: bool) -> Option<Task> {
        let mut st = self.lock();
        if was_busy {
            st.busy -= 1;
        }
        loop {
            if self.abandoned() {
                // The descriptors of the queued tasks are closed with them; threads still walking stop
                // at their next directory.
                st.queue.clear();
                return None;
            }
            if let Some(task) = st.queue.pop() {
                st.busy += 1;
                return Some(task);
            }
            if st.busy == 0 {
                drop(st);
                self.ready.notify_all();
                return None;
            }
            self.idle.fetch_add(1, Ordering::Relaxed);
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
        // Under the lock: a thread in `next` has either seen the flag or is already waiting, so the
        // notification cannot fall between its check and its wait (it would then wait forever, and the
        // boot with it).
        let st = self.lock();
        self.ready.notify_all();
        drop(st);
    }

    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// True for the first caller only.
    pub fn first_refusal(&self) -> bool {
        !self.refusal_told.swap(true, Ordering::Relaxed)
    }

    pub fn add_checked(&self, n: u64) {
        self.checked_by_tasks.fetch_add(n, Ordering::Relaxed);
    }

    pub fn checked_by_tasks(&self) -> u64 {
        self.checked_by_tasks.load(Ordering::Relaxed)
    }

    /// A guard that abandons the walk if its thread unwinds, so that no other thread waits for it forever.
    pub fn abandon_on_panic(&self) -> AbandonOnPanic<'_> {
        AbandonOnPanic(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking walker cannot leave the queue half-changed: every change is one push or pop.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct AbandonOnPanic<'s>(&'s Share);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Until a thread waits on the condition variable.
    fn wait_for_idle(share: &Share) {
        while share.idle.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_thread_waiting_for_work_is_released_when_the_busy_one_panics() {
        let share = Share::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| share.next(false).is_none());
            wait_for_idle(&share);
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _guard = share.abandon_on_panic();
                panic!("a walk failed");
            }));
            assert!(unwound.is_err());
            assert!(waiter.join().unwrap(), "the waiter got a task or never returned");
        });
        assert!(share.abandoned());
    }

    /// An abandon racing with a thread about to wait: the waiter always returns. Before `abandon` took
    /// the lock, the notification could land between the waiter's check and its wait, and a boot on a
    /// volume refusing chown then hung.
    #[test]
    fn an_abandon_racing_with_a_waiter_always_releases_it() {
        for _ in 0..2000 {
            let share = Share::new();
            std::thread::scope(|s| {
                let waiter = s.spawn(|| share.next(false).is_none());
                s.spawn(|| share.abandon());
                assert!(waiter.join().unwrap());
            });
        }
    }

    #[test]
    fn the_last_busy_thread_ends_the_wait_of_the_others() {
        let share = Share::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| share.next(false).is_none());
            wait_for_idle(&share);
            assert!(share.next(true).is_none());
            assert!(waiter.join().unwrap());
        });
        assert!(!share.abandoned());
    }
}
