//! What the supervisor decides, without a process in sight: events in, actions out.
//!
//! [`Plan`] is the supervisor's policy as a state machine. The driver (`mod.rs`) turns what the
//! operating system reports (a process said it is ready, a process exited, a signal, the clock)
//! into calls here, and carries out the [`Action`]s that come back: start a process, ask one to
//! stop, kill one, exit. Every rule below is therefore unit-tested with made-up clocks and ids.
//!
//! # The rules
//!
//! - **Start-up.** All processes start at once. Each must say it is ready within
//!   [`READY_TIMEOUT`]. If one exits (or times out) before *every* process has been ready once,
//!   the configuration or the code is broken, and restarting would only repeat the failure:
//!   the others are stopped and the supervisor exits with [`EXIT_STARTUP_FAILED`].
//! - **A process dies** after start-up: its place is filled again after a back-off that doubles
//!   with each failure in a row ([`Backoff`]), so a process that crashes as soon as it starts
//!   does not turn into a fork loop. A process that stayed up [`STABLE_AFTER`] resets it.
//! - **Reload** (SIGHUP): each place in turn gets a new process; once the new one is ready, the
//!   old one is asked to stop (it drains: finishes what it accepted and closes). Then the next
//!   place. The listening socket is the supervisor's and stays open throughout, so a client
//!   that connects meanwhile waits in its backlog for whichever process accepts next. If the
//!   new process fails to get ready, the reload stops there and the old processes stay.
//! - **Stop** (SIGTERM, SIGINT): every process is asked to stop; when the last has exited, the
//!   supervisor exits 0 if they all did, 1 if not. A process that outlives the stop deadline is
//!   killed. A second stop kills them all and exits at once with status 130.

use std::time::{Duration, Instant};

use crate::notify::State as Announce;
use crate::signals::EXIT_SECOND_SIGNAL;

/// How long a new process may take to say it is ready (its start-up hooks included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A process that ran this long before it died was not crashing at start: its place starts
/// again with the shortest back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Time a stopping process gets beyond its own `--shutdown-timeout` before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The supervisor's exit status when a process failed before all were ready: the same status
/// a single process exits with when its start-up fails.
pub const EXIT_STARTUP_FAILED: i32 = 3;

/// The delay before a place whose process died is filled again: 100 ms, doubling with each
/// death in a row, at most 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    /// No failure yet.
    pub fn new() -> Backoff {
        Backoff { failures: 0 }
    }

    /// One more failure in a row; returns the delay before the next start.
    pub fn fail(&mut self) -> Duration {
        let delay = Backoff::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Backoff::MAX);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The place is healthy again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A process, as the plan names it: ids are never reused.
pub type Id = u64;

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a new process for place `slot`, known from now on as `id`.
    Start { id: Id, slot: usize },
    /// Ask process `id` to stop gracefully (SIGTERM: it drains).
    Stop(Id),
    /// End process `id` now (SIGKILL).
    Kill(Id),
    /// Tell the service manager (systemd's `sd_notify`, see [`crate::notify`]).
    Announce(crate::notify::State),
    /// Exit the supervisor with this status.
    Exit(i32),
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Started; it has not said it is ready. It must before the deadline.
    Starting { deadline: Instant },
    /// Serving.
    Ready,
    /// Asked to stop; killed if still there at the deadline.
    Stopping { deadline: Instant },
}

/// One process the plan knows.
#[derive(Debug, Clone, Copy)]
struct Member {
    id: Id,
    slot: usize,
    started: Instant,
    state: State,
}

/// What the supervisor as a whole is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The first processes are starting; none may fail.
    Starting,
    /// Every place has (or will soon have again) a process.
    Running,
    /// Replacing the processes one place at a time: `slot` is being replaced by `new` (once it
    /// is started), and `pending` places come after it.
    Reloading {
        slot: usize,
        new: Option<Id>,
        pending: Vec<usize>,
    },
    /// Stopping everything; exit with `status` once the last process is gone.
    Stopping { status: i32 },
}

/// The supervisor's policy. See the module documentation for the rules.
#[derive(Debug)]
pub struct Plan {
    places: usize,
    stop_timeout: Duration,
    members: Vec<Member>,
    backoff: Vec<Backoff>,
    /// When an empty place is to be filled again.
    refill: Vec<Option<Instant>>,
    phase: Phase,
    next_id: Id,
}

impl Plan {
    /// A plan for `places` processes that each drain within `shutdown_timeout`.
    pub fn new(places: usize, shutdown_timeout: Duration) -> Plan {
        Plan {
            places,
            stop_timeout: shutdown_timeout.saturating_add(STOP_GRACE),
            members: Vec::new(),
            backoff: vec![Backoff::new(); places],
            refill: vec![None; places],
            phase: Phase::Starting,
            next_id: 1,
        }
    }

    /// Start every place.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        (0..self.places)
            .map(|slot| self.launch(slot, now))
            .collect()
    }

    /// Process `id` said it is ready.
    pub fn on_ready(&mut self, id: Id, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(member) = self.member_mut(id) else {
            return actions;
        };
        if !matches!(member.state, State::Starting { .. }) {
            return actions;
        }
        member.state = State::Ready;
        let slot = member.slot;
        match &mut self.phase {
            Phase::Starting if self.members.iter().all(|m| m.state == State::Ready) => {
                log::info!("all {} worker processes are ready", self.places);
                self.phase = Phase::Running;
                actions.push(Action::Announce(Announce::Ready));
            }
            Phase::Reloading { new, .. } if *new == Some(id) => {
                // The replacement serves: the old process of this place drains.
                let old: Vec<Id> = self
                    .members
                    .iter()
                    .filter(|m| m.slot == slot && m.id != id && m.state == State::Ready)
                    .map(|m| m.id)
                    .collect();
                for old in old {
                    actions.push(self.stop_member(old, now));
                }
                actions.extend(self.reload_next(now));
            }
            _ => {}
        }
        actions
    }

    /// Process `id` exited; `clean` if with status 0.
    pub fn on_exit(&mut self, id: Id, clean: bool, now: Instant) -> Vec<Action> {
        let Some(index) = self.members.iter().position(|m| m.id == id) else {
            return Vec::new();
        };
        let member = self.members.remove(index);
        let mut actions = Vec::new();
        match self.phase.clone() {
            Phase::Stopping { status } => {
                let status = if clean { status } else { status.max(1) };
                self.phase = Phase::Stopping { status };
            }
            Phase::Starting => {
                log::error!(
                    "worker process {} exited before every process was ready; giving up",
                    member.slot + 1
                );
                actions.extend(self.stop_all(EXIT_STARTUP_FAILED, now));
            }
            Phase::Running | Phase::Reloading { .. } => {
                if matches!(member.state, State::Stopping { .. }) {
                    // An old process that finished draining: its place is already filled.
                } else if self.is_replacement(id) {
                    log::error!(
                        "the new worker process {} exited before it was ready; reload \
                         abandoned, the running processes stay",
                        member.slot + 1
                    );
                    self.phase = Phase::Running;
                    actions.push(Action::Announce(Announce::Ready));
                } else {
                    actions.extend(self.lost(member, now));
                }
            }
        }
        actions.extend(self.maybe_exit());
        actions
    }

    /// SIGTERM or SIGINT: stop everything, then exit. A second one while stopping: kill
    /// everything and exit at once with [`EXIT_SECOND_SIGNAL`] — the operator wants out now.
    pub fn on_stop(&mut self, now: Instant) -> Vec<Action> {
        if matches!(self.phase, Phase::Stopping { .. }) {
            let mut actions: Vec<Action> =
                self.members.iter().map(|m| Action::Kill(m.id)).collect();
            actions.push(Action::Exit(EXIT_SECOND_SIGNAL));
            return actions;
        }
        let mut actions = vec![Action::Announce(Announce::Stopping)];
        actions.extend(self.stop_all(0, now));
        actions.extend(self.maybe_exit());
        actions
    }

    /// SIGHUP: replace every process, one place at a time. A reload already under way starts
    /// over once its current place is done, so the last SIGHUP always leads to a full round.
    pub fn on_reload(&mut self, now: Instant) -> Vec<Action> {
        match &mut self.phase {
            Phase::Running => {
                self.phase = Phase::Reloading {
                    slot: 0,
                    new: None,
                    pending: (0..self.places).collect(),
                };
                let mut actions = vec![Action::Announce(Announce::Reloading)];
                actions.extend(self.reload_next(now));
                actions
            }
            Phase::Reloading { slot, pending, .. } => {
                let current = *slot;
                *pending = (0..self.places).filter(|&s| s != current).collect();
                pending.push(current);
                Vec::new()
            }
            Phase::Starting => {
                log::warn!("SIGHUP during start-up: ignored; send it again once ready");
                Vec::new()
            }
            Phase::Stopping { .. } => Vec::new(),
        }
    }

    /// The clock reached `now`: kill what overran, fill the places whose back-off is over.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let overdue: Vec<(Id, State)> = self
            .members
            .iter()
            .filter(|m| match m.state {
                State::Starting { deadline } | State::Stopping { deadline } => deadline <= now,
                State::Ready => false,
            })
            .map(|m| (m.id, m.state))
            .collect();
        for (id, state) in overdue {
            match state {
                State::Starting { .. } => log::error!(
                    "worker process {} was not ready within {} s; killing it",
                    self.member_mut(id).map_or(0, |m| m.slot + 1),
                    READY_TIMEOUT.as_secs()
                ),
                _ => log::error!("a worker process did not stop in time; killing it"),
            }
            // Killed once: the deadline moves far away so the kill is not repeated every tick;
            // the exit comes as an ordinary `on_exit`.
            if let Some(member) = self.member_mut(id) {
                member.state = State::Stopping {
                    deadline: now + Duration::from_secs(86_400),
                };
            }
            actions.push(Action::Kill(id));
        }
        if matches!(self.phase, Phase::Running | Phase::Reloading { .. }) {
            for slot in 0..self.places {
                if self.refill[slot].is_some_and(|at| at <= now) {
                    self.refill[slot] = None;
                    actions.push(self.launch(slot, now));
                }
            }
        }
        actions
    }

    /// The next time [`Plan::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.iter().filter_map(|m| match m.state {
            State::Starting { deadline } | State::Stopping { deadline } => Some(deadline),
            State::Ready => None,
        });
        members.chain(self.refill.iter().flatten().copied()).min()
    }

    /// How many processes are alive (in any state).
    pub fn alive(&self) -> usize {
        self.members.len()
    }

    /// The place of process `id`, if it is alive.
    pub fn slot_of(&self, id: Id) -> Option<usize> {
        self.members.iter().find(|m| m.id == id).map(|m| m.slot)
    }

    fn member_mut(&mut self, id: Id) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn is_replacement(&self, id: Id) -> bool {
        matches!(self.phase, Phase::Reloading { new: Some(new), .. } if new == id)
    }

    /// A new process for `slot`.
    fn launch(&mut self, slot: usize, now: Instant) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        self.members.push(Member {
            id,
            slot,
            started: now,
            state: State::Starting {
                deadline: now + READY_TIMEOUT,
            },
        });
        Action::Start { id, slot }
    }

    /// Ask one process to stop, with a deadline.
    fn stop_member(&mut self, id: Id, now: Instant) -> Action {
        let deadline = now + self.stop_timeout;
        if let Some(member) = self.member_mut(id) {
            member.state = State::Stopping { deadline };
        }
        Action::Stop(id)
    }

    /// Stop everything alive and exit with `status` once it has gone.
    fn stop_all(&mut self, status: i32, now: Instant) -> Vec<Action> {
        self.phase = Phase::Stopping { status };
        self.refill.iter_mut().for_each(|at| *at = None);
        let ids: Vec<Id> = self
            .members
            .iter()
            .filter(|m| !matches!(m.state, State::Stopping { .. }))
            .map(|m| m.id)
            .collect();
        ids.into_iter()
            .map(|id| self.stop_member(id, now))
            .collect()
    }

    /// A serving (or starting) process died unasked: fill its place after the back-off.
    fn lost(&mut self, member: Member, now: Instant) -> Vec<Action> {
        let slot = member.slot;
        if now.duration_since(member.started) >= STABLE_AFTER {
            self.backoff[slot].reset();
        }
        if matches!(self.phase, Phase::Reloading { slot: s, new: Some(_), .. } if s == slot) {
            log::warn!(
                "worker process {} died while its replacement starts",
                slot + 1
            );
            return Vec::new();
        }
        let delay = self.backoff[slot].fail();
        log::warn!(
            "worker process {} died; starting a new one in {} ms",
            slot + 1,
            delay.as_millis()
        );
        self.refill[slot] = Some(now + delay);
        Vec::new()
    }

    /// Start replacing the next place of a reload, or end the reload.
    fn reload_next(&mut self, now: Instant) -> Vec<Action> {
        let Phase::Reloading { pending, .. } = &mut self.phase else {
            return Vec::new();
        };
        if pending.is_empty() {
            log::info!("reload done: every worker process was replaced");
            self.phase = Phase::Running;
            return vec![Action::Announce(Announce::Ready)];
        }
        let slot = pending.remove(0);
        let action = self.launch(slot, now);
        let Action::Start { id, .. } = action else {
            unreachable!("launch starts a process");
        };
        if let Phase::Reloading {
            slot: current, new, ..
        } = &mut self.phase
        {
            *current = slot;
            *new = Some(id);
        }
        log::info!("reload: starting a new worker process {}", slot + 1);
        vec![action]
    }

    /// Stopping, and nothing is left: exit.
    fn maybe_exit(&self) -> Option<Action> {
        match self.phase {
            Phase::Stopping { status } if self.members.is_empty() => Some(Action::Exit(status)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
