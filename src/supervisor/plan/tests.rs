//! The supervisor's rules, with made-up clocks and ids.

use super::*;

const SHUTDOWN: Duration = Duration::from_secs(30);

/// The actions, announcements to the service manager and the closing of the listener left
/// out (tested on their own).
fn acts(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, Action::Announce(_) | Action::CloseListener))
        .collect()
}

fn starts(actions: &[Action]) -> Vec<(Id, usize)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Action::Start { id, slot } => Some((id, slot)),
            _ => None,
        })
        .collect()
}

/// A plan of `n` places whose first processes have been started (none ready yet), and their
/// ids.
fn started(n: usize, now: Instant) -> (Plan, Vec<Id>) {
    let mut plan = Plan::new(n, SHUTDOWN);
    let ids = starts(&plan.start(now))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    (plan, ids)
}

/// A plan of `n` places whose first processes are all ready, and their ids.
fn running(n: usize, now: Instant) -> (Plan, Vec<Id>) {
    let mut plan = Plan::new(n, SHUTDOWN);
    let ids: Vec<Id> = starts(&plan.start(now))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for &id in &ids {
        assert!(acts(plan.on_ready(id, now)).is_empty());
    }
    assert_eq!(plan.phase, Phase::Running);
    (plan, ids)
}

#[test]
fn start_launches_every_place_once() {
    let now = Instant::now();
    let mut plan = Plan::new(3, SHUTDOWN);
    let started = starts(&plan.start(now));
    assert_eq!(started.len(), 3);
    let slots: Vec<usize> = started.iter().map(|&(_, slot)| slot).collect();
    assert_eq!(slots, [0, 1, 2]);
    assert_eq!(plan.next_deadline(), Some(now + READY_TIMEOUT));
}

/// A process that dies before all are ready ends the supervisor with the start-up status,
/// after the others have stopped; nothing is restarted.
#[test]
fn a_death_during_start_up_gives_up() {
    let now = Instant::now();
    let (mut plan, ids) = started(2, now);
    acts(plan.on_ready(ids[0], now));
    let actions = acts(plan.on_exit(ids[1], false, now));
    assert_eq!(actions, [Action::Stop(ids[0])]);
    let later = now + Duration::from_secs(20);
    assert!(starts(&acts(plan.on_tick(later))).is_empty());
    assert_eq!(
        acts(plan.on_exit(ids[0], true, later)),
        [Action::Exit(EXIT_STARTUP_FAILED)]
    );
}

/// A process that is not ready in time during start-up is killed, and then counts as a
/// failed start.
#[test]
fn a_process_that_never_gets_ready_is_killed() {
    let now = Instant::now();
    let mut plan = Plan::new(1, SHUTDOWN);
    let (id, _) = starts(&plan.start(now))[0];
    let late = now + READY_TIMEOUT;
    assert_eq!(acts(plan.on_tick(late)), [Action::Kill(id)]);
    // Killed once, not on every tick.
    assert!(acts(plan.on_tick(late + Duration::from_secs(1))).is_empty());
    assert_eq!(
        acts(plan.on_exit(id, false, late)),
        [Action::Exit(EXIT_STARTUP_FAILED)]
    );
}

/// After start-up, a dead process's place is filled again after a back-off that doubles with
/// each death in a row, and resets after a process that lived long.
#[test]
fn a_dead_process_is_replaced_with_backoff() {
    let mut now = Instant::now();
    let (mut plan, ids) = running(2, now);
    let mut victim = ids[1];
    let mut delays = Vec::new();
    for _ in 0..4 {
        assert!(acts(plan.on_exit(victim, false, now)).is_empty());
        let at = plan.next_deadline().expect("a refill is due");
        delays.push(at - now);
        assert!(acts(plan.on_tick(at - Duration::from_millis(1))).is_empty());
        let started = starts(&acts(plan.on_tick(at)));
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].1, 1, "the same place is filled");
        victim = started[0].0;
        now = at;
        acts(plan.on_ready(victim, now));
    }
    let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400, 800]);
    // This one lived long: the next death waits the shortest delay again.
    now += STABLE_AFTER;
    acts(plan.on_exit(victim, false, now));
    assert_eq!(plan.next_deadline(), Some(now + Duration::from_millis(100)));
}

#[test]
fn backoff_is_capped() {
    let mut backoff = Backoff::new();
    let delays: Vec<Duration> = (0..40).map(|_| backoff.fail()).collect();
    assert_eq!(delays[0], Duration::from_millis(100));
    assert_eq!(*delays.last().expect("delays"), Duration::from_secs(10));
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
}

/// SIGHUP replaces one place at a time: the new process starts, the old one is asked to stop
/// only once the new one is ready, and only then does the next place start.
#[test]
fn reload_replaces_one_place_at_a_time() {
    let now = Instant::now();
    let (mut plan, old) = running(2, now);
    let first = starts(&acts(plan.on_reload(now)));
    assert_eq!(first.len(), 1);
    let (new0, slot0) = first[0];
    assert_eq!(slot0, 0);
    // Nothing stops while the new process is starting.
    assert!(acts(plan.on_tick(now + Duration::from_secs(1))).is_empty());
    let actions = acts(plan.on_ready(new0, now));
    assert_eq!(actions[0], Action::Stop(old[0]));
    let second = starts(&actions[1..]);
    assert_eq!(second.len(), 1);
    let (new1, slot1) = second[0];
    assert_eq!(slot1, 1);
    // The old process drains and exits cleanly: nothing is restarted for it.
    assert!(acts(plan.on_exit(old[0], true, now)).is_empty());
    assert_eq!(acts(plan.on_ready(new1, now)), [Action::Stop(old[1])]);
    assert!(acts(plan.on_exit(old[1], true, now)).is_empty());
    assert_eq!(plan.phase, Phase::Running);
    assert_eq!(plan.alive(), 2);
    assert_eq!(plan.slot_of(new0), Some(0));
}

/// A replacement that fails abandons the reload and keeps the old processes serving.
#[test]
fn a_failed_replacement_keeps_the_old_processes() {
    let now = Instant::now();
    let (mut plan, old) = running(2, now);
    let (new0, _) = starts(&acts(plan.on_reload(now)))[0];
    assert!(acts(plan.on_exit(new0, false, now)).is_empty());
    assert_eq!(plan.phase, Phase::Running);
    assert_eq!(plan.alive(), 2);
    assert!(old.iter().all(|&id| plan.slot_of(id).is_some()));
    assert_eq!(plan.next_deadline(), None, "nothing to refill");
}

/// A second SIGHUP during a reload leads to one more full round after the current place.
#[test]
fn a_reload_during_a_reload_starts_over() {
    let now = Instant::now();
    let (mut plan, _) = running(2, now);
    let (new0, _) = starts(&acts(plan.on_reload(now)))[0];
    assert!(acts(plan.on_reload(now)).is_empty());
    let mut replaced = vec![0];
    let mut next = acts(plan.on_ready(new0, now));
    while let Some(&(id, slot)) = starts(&next).first() {
        replaced.push(slot);
        next = acts(plan.on_ready(id, now));
    }
    assert_eq!(replaced, [0, 1, 0]);
    assert_eq!(plan.phase, Phase::Running);
}

/// Stop asks every process to stop, exits 0 once all exited cleanly, 1 if one did not, and
/// kills what outlives the deadline.
#[test]
fn stop_waits_for_every_process() {
    let now = Instant::now();
    let (mut plan, ids) = running(2, now);
    let actions = acts(plan.on_stop(now));
    assert_eq!(actions, [Action::Stop(ids[0]), Action::Stop(ids[1])]);
    assert!(acts(plan.on_exit(ids[0], true, now)).is_empty());
    let deadline = now + SHUTDOWN + STOP_GRACE;
    assert_eq!(plan.next_deadline(), Some(deadline));
    assert_eq!(acts(plan.on_tick(deadline)), [Action::Kill(ids[1])]);
    assert_eq!(
        acts(plan.on_exit(ids[1], false, deadline)),
        [Action::Exit(1)]
    );

    let (mut plan, ids) = running(1, now);
    acts(plan.on_stop(now));
    assert_eq!(acts(plan.on_exit(ids[0], true, now)), [Action::Exit(0)]);
}

/// A stop during back-off does not start the place again.
#[test]
fn stop_cancels_pending_refills() {
    let now = Instant::now();
    let (mut plan, ids) = running(2, now);
    acts(plan.on_exit(ids[0], false, now));
    acts(plan.on_stop(now));
    let later = now + Duration::from_secs(1);
    assert!(starts(&acts(plan.on_tick(later))).is_empty());
    assert_eq!(acts(plan.on_exit(ids[1], true, later)), [Action::Exit(0)]);
}

/// A stop during a reload stops the old and the new processes alike.
#[test]
fn stop_during_a_reload_stops_everyone() {
    let now = Instant::now();
    let (mut plan, old) = running(1, now);
    let (new, _) = starts(&acts(plan.on_reload(now)))[0];
    let mut stopped = acts(plan.on_stop(now));
    stopped.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(stopped.len(), 2);
    assert!(stopped.contains(&Action::Stop(old[0])) && stopped.contains(&Action::Stop(new)));
    // The new process getting ready now changes nothing.
    assert!(acts(plan.on_ready(new, now)).is_empty());
    acts(plan.on_exit(old[0], true, now));
    assert_eq!(acts(plan.on_exit(new, true, now)), [Action::Exit(0)]);
}

/// The service manager hears READY once every process is ready, RELOADING then READY around a
/// reload, and STOPPING at a stop.
#[test]
fn announcements_follow_the_phases() {
    let now = Instant::now();
    let announced = |actions: &[Action]| -> Vec<Announce> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Announce(state) => Some(*state),
                _ => None,
            })
            .collect()
    };
    let (mut plan, ids) = started(2, now);
    assert!(announced(&plan.on_ready(ids[0], now)).is_empty());
    assert_eq!(announced(&plan.on_ready(ids[1], now)), [Announce::Ready]);
    let reload = plan.on_reload(now);
    assert_eq!(announced(&reload), [Announce::Reloading]);
    let (new0, _) = starts(&reload)[0];
    let next = plan.on_ready(new0, now);
    assert!(announced(&next).is_empty());
    let (new1, _) = starts(&next)[0];
    assert_eq!(announced(&plan.on_ready(new1, now)), [Announce::Ready]);
    assert_eq!(announced(&plan.on_stop(now)), [Announce::Stopping]);
}

/// A second stop kills whatever is left and exits at once with 130.
#[test]
fn a_second_stop_kills_and_exits() {
    let now = Instant::now();
    let (mut plan, ids) = running(2, now);
    plan.on_stop(now);
    plan.on_exit(ids[0], true, now);
    assert_eq!(
        acts(plan.on_stop(now)),
        [Action::Kill(ids[1]), Action::Exit(130)]
    );
}

/// After start-up, a new process that is not ready in time is killed and then counts as a
/// failed start: its place is filled again after the back-off, not left empty.
#[test]
fn a_replacement_that_never_gets_ready_is_retried() {
    let now = Instant::now();
    let (mut plan, ids) = running(2, now);
    plan.on_exit(ids[0], false, now);
    let at = plan.next_deadline().expect("a refill");
    let (new, slot) = starts(&acts(plan.on_tick(at)))[0];
    assert_eq!(slot, 0);
    let late = at + READY_TIMEOUT;
    assert_eq!(acts(plan.on_tick(late)), [Action::Kill(new)]);
    assert!(acts(plan.on_exit(new, false, late)).is_empty());
    let again = plan.next_deadline().expect("the place is filled again");
    assert_eq!(again, late + Duration::from_millis(200));
    assert_eq!(starts(&acts(plan.on_tick(again))).len(), 1);
}

/// During a reload, a new process that is not ready in time is killed, the reload is
/// abandoned (the old process keeps its place) and the next SIGHUP starts a new one.
#[test]
fn a_reload_whose_new_process_never_gets_ready_is_abandoned() {
    let now = Instant::now();
    let (mut plan, old) = running(1, now);
    let (new, _) = starts(&acts(plan.on_reload(now)))[0];
    let late = now + READY_TIMEOUT;
    assert_eq!(acts(plan.on_tick(late)), [Action::Kill(new)]);
    let after = plan.on_exit(new, false, late);
    assert!(
        after.contains(&Action::Announce(Announce::Ready)),
        "{after:?}"
    );
    assert_eq!(plan.phase, Phase::Running);
    assert_eq!(plan.slot_of(old[0]), Some(0));
    assert_eq!(
        starts(&acts(plan.on_reload(late))).len(),
        1,
        "a new reload starts"
    );
}

/// A stop closes the supervisor's listener, once.
#[test]
fn a_stop_closes_the_listener() {
    let now = Instant::now();
    let (mut plan, _) = running(2, now);
    let actions = plan.on_stop(now);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == Action::CloseListener)
            .count(),
        1
    );
}

/// A place whose process died gets no second process when a reload reaches it before the
/// refill: the replacement fills it, and the refill, once due, starts nothing.
#[test]
fn a_reload_and_a_refill_never_fill_one_place_twice() {
    let now = Instant::now();
    let (mut plan, ids) = running(2, now);
    plan.on_exit(ids[0], false, now);
    let (new0, slot) = starts(&acts(plan.on_reload(now)))[0];
    assert_eq!(slot, 0);
    let next = acts(plan.on_ready(new0, now));
    let (new1, _) = starts(&next)[0];
    acts(plan.on_ready(new1, now));
    let later = now + Duration::from_secs(11);
    assert!(starts(&acts(plan.on_tick(later))).is_empty());
    let live = plan
        .members
        .iter()
        .filter(|m| !matches!(m.state, State::Stopping { .. }))
        .count();
    assert_eq!(live, 2);
}

/// The old process dies while its replacement starts, then the replacement fails: the place
/// is filled again after the back-off instead of staying empty.
#[test]
fn a_place_emptied_during_a_failed_reload_is_filled_again() {
    let now = Instant::now();
    let (mut plan, old) = running(1, now);
    let (new, _) = starts(&acts(plan.on_reload(now)))[0];
    plan.on_exit(old[0], false, now);
    plan.on_exit(new, false, now);
    let at = plan.next_deadline().expect("a refill is due");
    assert_eq!(starts(&acts(plan.on_tick(at))).len(), 1);
}

/// After the plan stopped by itself (a failed start-up), the operator's first SIGTERM is not a
/// second one: it neither kills nor changes the exit status.
#[test]
fn a_stop_after_a_failed_start_up_is_a_first_stop() {
    let now = Instant::now();
    let (mut plan, ids) = started(2, now);
    plan.on_exit(ids[0], false, now);
    assert!(acts(plan.on_stop(now)).is_empty());
    assert_eq!(
        acts(plan.on_exit(ids[1], true, now)),
        [Action::Exit(EXIT_STARTUP_FAILED)]
    );
}
