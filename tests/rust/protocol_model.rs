//! Exhaustive model check of the crash-consistent slot protocol (issue 10.2): the pid lock
//! with takeover, the journalled step, the repair (roll forward + queue rebuild + reclaim of
//! the dead holder's slots), reclaim itself and forwarding intents between two buffers.
//!
//! Why not loom: every atomic of a buffer lives at a layout offset inside a zero-filled memfd
//! mapping shared between processes (`layout.rs`), and the lock and the queues sleep with futex
//! syscalls; loom's atomics are heap objects of another size that must be created through loom
//! inside its executor, so swapping `sync.rs` under `cfg(loom)` cannot cover the shared-memory
//! code. Instead this test models each protocol step as the sequence of atomic actions the code
//! performs under the lock (the order of `ring_protocol.rs`: lock, plan with pops, journal
//! written, journal active, each slot record, each counter, each queue push, journal cleared,
//! unlock) and explores **every interleaving** of the processes of a scenario with **every crash
//! point** (a crash is possible before any action of a crashable process), by depth-first
//! search over the reachable states. The lock is modelled as the code has it: it is taken when
//! free, waited for while its holder lives, and taken over from a dead holder, which then
//! repairs. Sequential consistency is assumed: every shared change happens under the lock, and
//! the memory orderings of the lock itself are covered by its Acquire/Release pairs.
//!
//! Checked in every reachable state: no slot token is in two places, a token in a queue has
//! the record state of that queue, and a token in no queue is held by a recorded pid or in
//! transit inside the lock holder's step. Checked in every final state, after the recovery the
//! supervisor does (reclaim every dead pid, upstream buffer first): the lock is free, the
//! journal inactive, every slot in exactly one queue, the filled queue holds exactly the
//! committed and unconsumed events in commit order, and every counter has its exact expected
//! value (commits and releases that passed their commit point, slots lost or aborted with the
//! dead, forwarded events counted consumed upstream exactly when committed downstream).
//!
//! Runs with every `cargo test` (about 10 s in a debug build); alone:
//! `cargo test --no-default-features --test protocol_model -- --nocapture` prints the state
//! counts. Without the settling of downstream buffers in `Ring::reclaim`, or without the queue
//! rebuild of the repair, it fails.
#![allow(
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::struct_excessive_bools
)]

#[path = "protocol_model/model.rs"]
mod model;

use model::{explore, Op, Proc};

const W0: [Op; 4] = [Op::AcqW(0, 1), Op::Commit(0), Op::AcqW(0, 1), Op::Commit(0)];
const FWD: [Op; 5] = [
    Op::AcqR(0, 1),
    Op::MarkFwd,
    Op::AcqW(1, 1),
    Op::Commit(1),
    Op::Release(0),
];

#[test]
fn writer_and_reader_with_any_two_crashes() {
    let rd = vec![
        Op::AcqR(0, 1),
        Op::Release(0),
        Op::AcqR(0, 1),
        Op::Release(0),
    ];
    let rep = explore(
        "writer+reader",
        [2, 1],
        vec![Proc::new(1, W0.to_vec(), true), Proc::new(2, rd, true)],
        2,
    );
    assert!(rep.crashed_finals > 0);
}

#[test]
fn two_writers_with_any_two_crashes() {
    let rep = explore(
        "two writers",
        [2, 1],
        vec![
            Proc::new(1, W0.to_vec(), true),
            Proc::new(2, W0.to_vec(), true),
        ],
        2,
    );
    assert!(rep.crashed_finals > 0);
}

#[test]
fn forwarder_between_two_buffers_with_any_two_crashes() {
    let mut fwd = FWD.to_vec();
    fwd.extend(FWD);
    let rep = explore(
        "writer+forwarder",
        [2, 1],
        vec![Proc::new(1, W0.to_vec(), true), Proc::new(2, fwd, true)],
        2,
    );
    assert!(rep.crashed_finals > 0);
}

#[test]
fn reclaimer_that_crashes_while_reclaiming() {
    let rd = vec![Op::AcqR(0, 1), Op::Release(0)];
    let rep = explore(
        "writer+reader+reclaimer",
        [2, 1],
        vec![
            Proc::new(1, W0.to_vec(), true),
            Proc::new(2, rd, true),
            Proc::new(3, vec![Op::Reclaim(0, 1), Op::Reclaim(0, 2)], true),
        ],
        2,
    );
    assert!(rep.crashed_finals > 0);
}

#[test]
fn batches_of_two_slots_with_any_two_crashes() {
    let w = vec![Op::AcqW(0, 2), Op::Commit(0), Op::AcqW(0, 2), Op::Commit(0)];
    let rd = vec![
        Op::AcqR(0, 2),
        Op::Release(0),
        Op::AcqR(0, 2),
        Op::Release(0),
    ];
    let rep = explore(
        "batch writer+batch reader",
        [3, 1],
        vec![Proc::new(1, w, true), Proc::new(2, rd, true)],
        2,
    );
    assert!(rep.crashed_finals > 0);
}

#[test]
fn writer_forwarder_and_downstream_reader_with_any_three_crashes() {
    let rd1 = vec![
        Op::AcqR(1, 1),
        Op::Release(1),
        Op::AcqR(1, 1),
        Op::Release(1),
    ];
    let rep = explore(
        "writer+forwarder+downstream reader",
        [2, 1],
        vec![
            Proc::new(1, W0.to_vec(), true),
            Proc::new(2, FWD.to_vec(), true),
            Proc::new(3, rd1, true),
        ],
        3,
    );
    assert!(rep.crashed_finals > 0);
}
