//! The model of `protocol_model.rs`: the slot protocol's processes as sequences of atomic
//! actions under the lock, the invariants of every reachable and every final state, and the
//! depth-first search over all interleavings and crash points ([`explore`]).

use std::collections::{HashSet, VecDeque};

pub type Pid = u8;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum St {
    Free,
    Writing,
    Filled,
    Reading,
}

/// Counters (the words a journal sets).
const COMMITTED: usize = 0;
const CONSUMED: usize = 1;
const LOST: usize = 2;
const ABORTED: usize = 3;
/// Commit count of the (only) writer registration of the buffer.
const WRITER_EVENTS: usize = 4;
const NW: usize = 5;

/// What a step does, for the ghost bookkeeping at its commit point (journal active).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    AcqW,
    Commit,
    AcqR,
    Release,
    Reclaim,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Plan {
    kind: Kind,
    state: St,
    holder: Pid,
    seq0: u32,
    slots: Vec<u8>,
    words: Vec<(usize, u32)>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Journal {
    active: bool,
    state: St,
    holder: Pid,
    seq0: u32,
    slots: Vec<u8>,
    words: Vec<(usize, u32)>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Rec {
    state: St,
    holder: Pid,
    seq: u32,
    /// Forwarding intent: delivered once buffer 1's writer has this many commits.
    intent: Option<u32>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct RingM {
    lock: Pid,
    j: Journal,
    recs: Vec<Rec>,
    empty: VecDeque<u8>,
    filled: VecDeque<u8>,
    ctr: [u32; NW],
}

impl RingM {
    fn new(slots: u8) -> RingM {
        RingM {
            lock: 0,
            j: Journal {
                active: false,
                state: St::Free,
                holder: 0,
                seq0: 0,
                slots: Vec::new(),
                words: Vec::new(),
            },
            recs: (0..slots)
                .map(|_| Rec {
                    state: St::Free,
                    holder: 0,
                    seq: 0,
                    intent: None,
                })
                .collect(),
            empty: (0..slots).collect(),
            filled: VecDeque::new(),
            ctr: [0; NW],
        }
    }
}

/// Operations of a process's program.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    /// Take up to this many free slots (one journalled step).
    AcqW(usize, u8),
    /// Commit every slot held for writing.
    Commit(usize),
    /// Take up to this many filled slots.
    AcqR(usize, u8),
    /// Release every slot held for reading.
    Release(usize),
    /// `Reader::mark_forward` of the slot read from buffer 0, towards buffer 1.
    MarkFwd,
    /// `Ring::reclaim(victim)` on a buffer, once the victim has ended.
    Reclaim(usize, Pid),
}

/// One atomic action.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Micro {
    Lock(usize),
    Plan(usize, Op),
    JWrite(usize, Plan),
    Activate(usize, Kind, u8),
    ApplyRec(usize, usize),
    ApplyWord(usize, usize),
    Push(usize, usize),
    Deactivate(usize),
    Unlock(usize),
    RepairStart(usize),
    Rebuild(usize),
    ReclaimNext(usize, Pid),
    Settle(usize, Pid),
    WaitEnded(Pid),
    MarkFwd,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Proc {
    pid: Pid,
    prog: Vec<Op>,
    pc: usize,
    micro: VecDeque<Micro>,
    alive: bool,
    crashed: bool,
    crashable: bool,
    held_w: [Vec<u8>; 2],
    held_r: [Vec<u8>; 2],
    // Ghost state: what the process holds by the journal's commit points.
    g_held_w: [u32; 2],
    g_held_r: [u32; 2],
    g_fwd_pending: bool,
    g_fwd_done: bool,
}

impl Proc {
    pub fn new(pid: Pid, prog: Vec<Op>, crashable: bool) -> Proc {
        Proc {
            pid,
            prog,
            pc: 0,
            micro: VecDeque::new(),
            alive: true,
            crashed: false,
            crashable,
            held_w: [Vec::new(), Vec::new()],
            held_r: [Vec::new(), Vec::new()],
            g_held_w: [0; 2],
            g_held_r: [0; 2],
            g_fwd_pending: false,
            g_fwd_done: false,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Sys {
    rings: [RingM; 2],
    procs: Vec<Proc>,
    crashes: u8,
    g_commits: [u32; 2],
    g_consumed: [u32; 2],
}

fn alive(sys: &Sys, pid: Pid) -> bool {
    sys.procs.iter().any(|p| p.pid == pid && p.alive)
}

fn step_micros(r: usize, plan: Plan) -> Vec<Micro> {
    let n = plan.slots.len();
    let nw = plan.words.len();
    let kind = plan.kind;
    let mut v = vec![Micro::JWrite(r, plan), Micro::Activate(r, kind, n as u8)];
    v.extend((0..n).map(|i| Micro::ApplyRec(r, i)));
    v.extend((0..nw).map(|i| Micro::ApplyWord(r, i)));
    v.extend((0..n).map(|i| Micro::Push(r, i)));
    v.push(Micro::Deactivate(r));
    v
}

fn push_front(q: &mut VecDeque<Micro>, v: Vec<Micro>) {
    for m in v.into_iter().rev() {
        q.push_front(m);
    }
}

fn set_record(rec: &mut Rec, state: St, holder: Pid, seq: u32) {
    match state {
        St::Writing | St::Reading => {
            rec.holder = holder;
            rec.intent = None;
        }
        St::Filled => {
            rec.seq = seq;
            rec.holder = 0;
        }
        St::Free => {
            rec.holder = 0;
            rec.intent = None;
        }
    }
    rec.state = state;
}

/// The plan of `op` by process `me` (lock held), or `None` when it has nothing to do (no slot:
/// the process gives up the rest of its program).
fn plan_op(sys: &mut Sys, pi: usize, r: usize, op: Op) -> Option<Plan> {
    let me = sys.procs[pi].pid;
    let ring = &mut sys.rings[r];
    let mut plan = Plan {
        kind: Kind::Reclaim,
        state: St::Free,
        holder: 0,
        seq0: 0,
        slots: Vec::new(),
        words: Vec::new(),
    };
    match op {
        Op::AcqW(_, n) => {
            while plan.slots.len() < usize::from(n) {
                let Some(s) = ring.empty.pop_front() else {
                    break;
                };
                plan.slots.push(s);
            }
            plan.kind = Kind::AcqW;
            plan.state = St::Writing;
            plan.holder = me;
            sys.procs[pi].held_w[r].clone_from(&plan.slots);
        }
        Op::Commit(_) => {
            plan.slots = std::mem::take(&mut sys.procs[pi].held_w[r]);
            let k = plan.slots.len() as u32;
            plan.kind = Kind::Commit;
            plan.state = St::Filled;
            plan.seq0 = ring.ctr[COMMITTED] + 1;
            plan.words.push((COMMITTED, ring.ctr[COMMITTED] + k));
            plan.words
                .push((WRITER_EVENTS, ring.ctr[WRITER_EVENTS] + k));
        }
        Op::AcqR(_, n) => {
            while plan.slots.len() < usize::from(n) {
                let Some(s) = ring.filled.pop_front() else {
                    break;
                };
                plan.slots.push(s);
            }
            plan.kind = Kind::AcqR;
            plan.state = St::Reading;
            plan.holder = me;
            sys.procs[pi].held_r[r].clone_from(&plan.slots);
        }
        Op::Release(_) => {
            plan.slots = std::mem::take(&mut sys.procs[pi].held_r[r]);
            let k = plan.slots.len() as u32;
            plan.kind = Kind::Release;
            plan.words.push((CONSUMED, ring.ctr[CONSUMED] + k));
        }
        Op::MarkFwd | Op::Reclaim(..) => unreachable!(),
    }
    (!plan.slots.is_empty()).then_some(plan)
}

/// Runs the next action of process `pi`; false when it is blocked (or has ended).
fn step(sys: &mut Sys, pi: usize) -> bool {
    if !sys.procs[pi].alive {
        return false;
    }
    let Some(m) = sys.procs[pi].micro.pop_front() else {
        let p = &mut sys.procs[pi];
        if p.pc == p.prog.len() {
            p.alive = false; // exits normally
            return true;
        }
        let op = p.prog[p.pc];
        p.pc += 1;
        let v = match op {
            Op::AcqW(r, _) | Op::Commit(r) | Op::AcqR(r, _) | Op::Release(r) => {
                vec![Micro::Lock(r), Micro::Plan(r, op)]
            }
            Op::MarkFwd => vec![Micro::MarkFwd],
            Op::Reclaim(r, victim) => vec![
                Micro::WaitEnded(victim),
                Micro::Settle(r, victim),
                Micro::Lock(r),
                Micro::ReclaimNext(r, victim),
                Micro::Unlock(r),
            ],
        };
        push_front(&mut p.micro, v);
        return true;
    };
    let me = sys.procs[pi].pid;
    match m {
        Micro::WaitEnded(victim) => {
            if alive(sys, victim) {
                sys.procs[pi].micro.push_front(m);
                return false;
            }
        }
        Micro::Lock(r) => {
            let holder = sys.rings[r].lock;
            if holder == 0 {
                sys.rings[r].lock = me;
            } else if !alive(sys, holder) {
                // Acquired::TakenOver(holder): repair first.
                sys.rings[r].lock = me;
                push_front(
                    &mut sys.procs[pi].micro,
                    vec![
                        Micro::RepairStart(r),
                        Micro::Rebuild(r),
                        Micro::ReclaimNext(r, holder),
                    ],
                );
            } else {
                sys.procs[pi].micro.push_front(m);
                return false;
            }
        }
        Micro::Plan(r, op) => {
            if let Some(plan) = plan_op(sys, pi, r, op) {
                let mut v = step_micros(r, plan);
                v.push(Micro::Unlock(r));
                push_front(&mut sys.procs[pi].micro, v);
            } else {
                // Nothing to do: unlock and give up the rest of the program.
                let p = &mut sys.procs[pi];
                p.micro.clear();
                p.micro.push_back(Micro::Unlock(r));
                p.pc = p.prog.len();
            }
        }
        Micro::JWrite(r, plan) => {
            let j = &mut sys.rings[r].j;
            j.state = plan.state;
            j.holder = plan.holder;
            j.seq0 = plan.seq0;
            j.slots = plan.slots;
            j.words = plan.words;
        }
        Micro::Activate(r, kind, n) => {
            sys.rings[r].j.active = true;
            let n = u32::from(n);
            let p = &mut sys.procs[pi];
            match kind {
                Kind::AcqW => p.g_held_w[r] += n,
                Kind::Commit => {
                    p.g_held_w[r] -= n;
                    sys.g_commits[r] += n;
                    if r == 1 && p.g_fwd_pending {
                        p.g_fwd_done = true;
                    }
                }
                Kind::AcqR => p.g_held_r[r] += n,
                Kind::Release => {
                    p.g_held_r[r] -= n;
                    sys.g_consumed[r] += n;
                    if r == 0 {
                        p.g_fwd_pending = false;
                        p.g_fwd_done = false;
                    }
                }
                Kind::Reclaim => {}
            }
        }
        Micro::ApplyRec(r, i) => {
            let ring = &mut sys.rings[r];
            let s = ring.j.slots[i] as usize;
            let (state, holder, seq) = (ring.j.state, ring.j.holder, ring.j.seq0 + i as u32);
            set_record(&mut ring.recs[s], state, holder, seq);
        }
        Micro::ApplyWord(r, i) => {
            let ring = &mut sys.rings[r];
            let (w, v) = ring.j.words[i];
            ring.ctr[w] = v;
        }
        Micro::Push(r, i) => {
            let ring = &mut sys.rings[r];
            let s = ring.j.slots[i];
            match ring.j.state {
                St::Filled => ring.filled.push_back(s),
                St::Free => ring.empty.push_back(s),
                St::Writing | St::Reading => {}
            }
        }
        Micro::Deactivate(r) => sys.rings[r].j.active = false,
        Micro::Unlock(r) => sys.rings[r].lock = 0,
        Micro::RepairStart(r) => {
            // Roll an active journal forward (records, counters, no push), then clear it.
            let j = &sys.rings[r].j;
            if j.active {
                let mut v: Vec<Micro> = (0..j.slots.len()).map(|i| Micro::ApplyRec(r, i)).collect();
                v.extend((0..j.words.len()).map(|i| Micro::ApplyWord(r, i)));
                v.push(Micro::Deactivate(r));
                push_front(&mut sys.procs[pi].micro, v);
            }
        }
        Micro::Rebuild(r) => {
            let ring = &mut sys.rings[r];
            ring.empty = (0..ring.recs.len() as u8)
                .filter(|&s| ring.recs[s as usize].state == St::Free)
                .collect();
            let mut f: Vec<(u32, u8)> = (0..ring.recs.len() as u8)
                .filter(|&s| ring.recs[s as usize].state == St::Filled)
                .map(|s| (ring.recs[s as usize].seq, s))
                .collect();
            f.sort_unstable();
            ring.filled = f.into_iter().map(|(_, s)| s).collect();
        }
        Micro::ReclaimNext(r, dead) => {
            let delivered_now = sys.rings[1].ctr[WRITER_EVENTS];
            let ring = &sys.rings[r];
            let found = ring.recs.iter().enumerate().find(|(_, rec)| {
                rec.holder == dead && matches!(rec.state, St::Writing | St::Reading)
            });
            if let Some((s, rec)) = found {
                let word = match rec.state {
                    St::Writing => ABORTED,
                    _ if rec.intent.is_some_and(|need| delivered_now >= need) => CONSUMED,
                    _ => LOST,
                };
                let plan = Plan {
                    kind: Kind::Reclaim,
                    state: St::Free,
                    holder: 0,
                    seq0: 0,
                    slots: vec![s as u8],
                    words: vec![(word, ring.ctr[word] + 1)],
                };
                let mut v = step_micros(r, plan);
                v.push(Micro::ReclaimNext(r, dead));
                push_front(&mut sys.procs[pi].micro, v);
            }
        }
        Micro::Settle(r, victim) => {
            // `settle_forward_targets`: lock and unlock buffer 1 (repairing it if its holder
            // died) before buffer 0's lock is taken.
            let fwd = sys.rings[r].recs.iter().any(|rec| {
                rec.holder == victim && rec.state == St::Reading && rec.intent.is_some()
            });
            if r == 0 && fwd {
                push_front(
                    &mut sys.procs[pi].micro,
                    vec![Micro::Lock(1), Micro::Unlock(1)],
                );
            }
        }
        Micro::MarkFwd => {
            let need = sys.rings[1].ctr[WRITER_EVENTS] + 1;
            if let Some(&s) = sys.procs[pi].held_r[0].first() {
                sys.rings[0].recs[s as usize].intent = Some(need);
                sys.procs[pi].g_fwd_pending = true;
            }
        }
    }
    true
}

/// Invariant of every reachable state.
fn check_instant(sys: &Sys) -> Result<(), String> {
    for (r, ring) in sys.rings.iter().enumerate() {
        for (s, rec) in ring.recs.iter().enumerate() {
            let s8 = s as u8;
            let in_e = ring.empty.iter().filter(|&&t| t == s8).count();
            let in_f = ring.filled.iter().filter(|&&t| t == s8).count();
            if in_e + in_f > 1 {
                return Err(format!("ring {r}: slot {s} in two places"));
            }
            if in_e == 1 && rec.state != St::Free || in_f == 1 && rec.state != St::Filled {
                return Err(format!("ring {r}: slot {s} queued as {rec:?}"));
            }
            let held = matches!(rec.state, St::Writing | St::Reading) && rec.holder != 0;
            if in_e + in_f == 0 && !held && ring.lock == 0 {
                return Err(format!("ring {r}: slot {s} lost ({rec:?}, lock free)"));
            }
        }
    }
    Ok(())
}

/// Runs process `pi` alone to its end (for the final recovery).
fn run_alone(sys: &mut Sys, pi: usize) {
    let mut guard = 0;
    while sys.procs[pi].alive {
        assert!(step(sys, pi), "recovery blocked: {sys:?}");
        guard += 1;
        assert!(guard < 10_000, "recovery does not end");
    }
}

/// Recovery of a final state as the supervisor does it, then the final checks.
fn check_final(mut sys: Sys) -> Result<(), String> {
    let dead: Vec<Pid> = sys.procs.iter().map(|p| p.pid).collect();
    let prog = [0, 1]
        .iter()
        .flat_map(|&r| dead.iter().map(move |&d| Op::Reclaim(r, d)))
        .collect();
    sys.procs.push(Proc::new(99, prog, false));
    let last = sys.procs.len() - 1;
    run_alone(&mut sys, last);
    // Every process has ended; one that gave up (no slot) may have ended holding slots,
    // which reclaim returns like those of a crashed one.
    let ended: Vec<&Proc> = sys.procs.iter().filter(|p| p.pid != 99).collect();
    let delivered = ended
        .iter()
        .filter(|p| p.g_fwd_pending && p.g_fwd_done && p.g_held_r[0] > 0)
        .count() as u32;
    for (r, ring) in sys.rings.iter().enumerate() {
        let what = format!("ring {r}");
        if ring.lock != 0 || ring.j.active {
            return Err(format!(
                "{what}: lock {} journal {}",
                ring.lock, ring.j.active
            ));
        }
        for (s, rec) in ring.recs.iter().enumerate() {
            let s8 = s as u8;
            let n = ring
                .empty
                .iter()
                .chain(&ring.filled)
                .filter(|&&t| t == s8)
                .count();
            if n != 1 {
                return Err(format!("{what}: slot {s} in {n} queues"));
            }
            let want = if ring.empty.contains(&s8) {
                St::Free
            } else {
                St::Filled
            };
            if rec.state != want {
                return Err(format!("{what}: slot {s} {rec:?} queued as {want:?}"));
            }
        }
        let c = ring.ctr;
        let seqs: Vec<u32> = ring
            .filled
            .iter()
            .map(|&s| ring.recs[s as usize].seq)
            .collect();
        let want_seqs: Vec<u32> = (c[CONSUMED] + c[LOST] + 1..=c[COMMITTED]).collect();
        if seqs != want_seqs {
            return Err(format!(
                "{what}: filled seqs {seqs:?}, want {want_seqs:?} ({c:?})"
            ));
        }
        let fwd = if r == 0 { delivered } else { 0 };
        let want = [
            sys.g_commits[r],
            sys.g_consumed[r] + fwd,
            ended.iter().map(|p| p.g_held_r[r]).sum::<u32>() - fwd,
            ended.iter().map(|p| p.g_held_w[r]).sum::<u32>(),
            sys.g_commits[r],
        ];
        if c != want {
            return Err(format!("{what}: counters {c:?}, want {want:?}"));
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct Report {
    states: usize,
    finals: usize,
    pub crashed_finals: usize,
}

/// Explores every interleaving and crash point of `procs` (at most `max_crashes` crashes).
pub fn explore(name: &str, slots: [u8; 2], procs: Vec<Proc>, max_crashes: u8) -> Report {
    let init = Sys {
        rings: [RingM::new(slots[0]), RingM::new(slots[1])],
        procs,
        crashes: 0,
        g_commits: [0; 2],
        g_consumed: [0; 2],
    };
    let mut seen: HashSet<Sys> = HashSet::new();
    let mut stack = vec![init];
    let mut rep = Report::default();
    while let Some(sys) = stack.pop() {
        if !seen.insert(sys.clone()) {
            continue;
        }
        rep.states += 1;
        if let Err(e) = check_instant(&sys) {
            panic!("{name}: {e}\n{sys:#?}");
        }
        let mut moved = false;
        for pi in 0..sys.procs.len() {
            let mut next = sys.clone();
            if step(&mut next, pi) {
                moved = true;
                stack.push(next);
            }
            let p = &sys.procs[pi];
            if p.alive && p.crashable && sys.crashes < max_crashes {
                let mut next = sys.clone();
                let q = &mut next.procs[pi];
                q.alive = false;
                q.crashed = true;
                q.micro.clear();
                next.crashes += 1;
                moved = true;
                stack.push(next);
            }
        }
        if !moved {
            assert!(
                sys.procs.iter().all(|p| !p.alive),
                "{name}: deadlock\n{sys:#?}"
            );
            rep.finals += 1;
            rep.crashed_finals += usize::from(sys.crashes > 0);
            if let Err(e) = check_final(sys.clone()) {
                panic!("{name}: {e}\n{sys:#?}");
            }
        }
    }
    eprintln!(
        "{name}: {} states, {} final states ({} with crashes), all consistent",
        rep.states, rep.finals, rep.crashed_finals
    );
    rep
}
