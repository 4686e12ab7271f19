"""The run's loss ledger: where every committed event ended, per buffer and per worker.

Every event committed to a buffer ends in exactly one of: consumed (a reader released it after
processing; for a worker that is "read", split further into forwarded, ``filtered_out`` and
``dropped``), discarded on purpose (``paused_discarded``, ``overwritten``) or lost with a reason
(``reader_crashed``: held by a reader that died; ``unread_at_shutdown``: still in the buffer when
nobody was left to read it). The counts live in the buffers' shared memory (per endpoint
registration, tagged with the worker), so they survive the processes that made them.

For a linear chain importer → filter → processor → exporter the books close exactly::

    committed(root) = read(exporter) + Σ filtered_out + events_lost
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WORKER_TAG_ENV = "MIMOCORB2_WORKER_TAG"


def worker_tags(worker_names: list[str]) -> dict[str, int]:
    """Tag of each worker (1, 2, ...; 0 means untagged)."""
    return {name: i + 1 for i, name in enumerate(worker_names)}


def buffer_ledger(
    stats: Mapping[str, Any], groups: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The ledger entry of one buffer from its ``_core`` statistics (and its reader groups).

    With reader groups (``delivery: every_worker``) every event is consumed once per group:
    ``consumed`` and ``lost`` are summed over the groups, and ``groups`` lists each group's
    ``consumed``, ``lost``, ``overwritten`` and ``backlog``.
    """
    crashed = int(stats.get("lost_reader_crashed", 0))
    unread = int(stats.get("lost_unread", 0))
    return {
        "committed": int(stats["event_count"]),
        "consumed": int(stats.get("consumed", 0)),
        "lost": crashed + unread,
        "lost_by_reason": {"reader_crashed": crashed, "unread_at_shutdown": unread},
        "paused_discarded": int(stats.get("paused_count", 0)),
        "overwritten": int(stats.get("overwritten", 0)),
        "in_buffer": int(stats.get("filled_slots", 0)),
        "aborted_writes": int(stats.get("aborted_writes", 0)),
        "repairs": int(stats.get("repairs", 0)),
        **_groups_entry(groups),
    }


def _groups_entry(groups: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    if not groups:
        return {}
    return {
        "groups": {
            str(g["name"]): {
                "consumed": int(g["consumed"]),
                "lost": int(g["lost"]),
                "overwritten": int(g["overwritten"]),
                "backlog": int(g["backlog"]),
            }
            for g in groups
        }
    }


def worker_ledger(
    registrations: Mapping[str, Sequence[Mapping[str, Any]]],
    tags: Mapping[str, int],
    procs: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Per-worker counts from the buffers' endpoint registrations and the processes.

    Args:
        registrations: ``{buffer: core.registrations()}``.
        tags: Worker name → tag.
        procs: The supervisor's process records (``worker``, ``alive``, ``exit_code``,
            ``restarts``, ``stopped``).
    """
    by_tag = {tag: name for name, tag in tags.items()}
    out: dict[str, dict[str, Any]] = {
        name: {
            "read": 0,
            "written": 0,
            "filtered_out": 0,
            "dropped": 0,
            "dropped_by_reason": {"sink_ended": 0, "worker_error": 0},
            "failed_processes": 0,
            "restarts": 0,
            "stopped_by_user": 0,
        }
        for name in tags
    }
    for regs in registrations.values():
        for r in regs:
            name = by_tag.get(int(r["tag"]))
            if name is None:
                continue
            w = out[name]
            if r["role"] == "writer":
                w["written"] += int(r["events"])
            else:
                w["read"] += int(r["events"])
                w["filtered_out"] += int(r["filtered"])
                failed = int(r.get("failed", 0))
                w["dropped"] += int(r["dropped"]) + failed
                w["dropped_by_reason"]["sink_ended"] += int(r["dropped"])
                w["dropped_by_reason"]["worker_error"] += failed
    for p in procs:
        w = out.get(p["worker"])
        if w is None:
            continue
        w["restarts"] += int(p.get("restarts", 0))
        if p.get("alive"):
            continue
        if p.get("stopped"):
            w["stopped_by_user"] += 1
        elif p.get("exit_code") != 0:
            w["failed_processes"] += 1
    return out


def apply_worker_notes(workers: Mapping[str, dict[str, Any]], run_dir: Path) -> None:
    """Adds what workers noted about their own losses (``ledger_notes/*.json`` in the run dir).

    A note (written by e.g. ``network.sender``) names its ``worker`` and may hold
    ``relabel_dropped`` (events already counted as dropped, by reason: moved from
    ``sink_ended``), ``dropped`` (events not counted yet, by reason), ``explain`` (text of each
    reason) and ``network`` (shown as the worker's ``network`` entry).
    """
    for path in sorted(Path(run_dir, "ledger_notes").glob("*.json")):
        try:
            note = json.loads(path.read_text())
            w = workers.get(note.get("worker"))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        if w is None:
            continue
        reasons = w["dropped_by_reason"]
        for why, n in (note.get("relabel_dropped") or {}).items():
            n = min(int(n), reasons["sink_ended"])
            if n > 0:
                reasons["sink_ended"] -= n
                reasons[why] = reasons.get(why, 0) + n
        for why, n in (note.get("dropped") or {}).items():
            if int(n) > 0:
                w["dropped"] += int(n)
                reasons[why] = reasons.get(why, 0) + int(n)
        w.setdefault("explain", {}).update(note.get("explain") or {})
        if "network" in note:
            w.setdefault("network", []).append(note["network"])
        _discard_on_purpose(w)


# Drops a worker makes by design (a publish link keeps only the newest events): discarded on
# purpose, like overwritten events, not lost; they do not fail the run.
_ON_PURPOSE_PREFIX = "publish_"


def _discard_on_purpose(w: dict[str, Any]) -> None:
    reasons = w["dropped_by_reason"]
    for why in [r for r in reasons if r.startswith(_ON_PURPOSE_PREFIX)]:
        n = reasons.pop(why)
        w["dropped"] -= n
        w["discarded"] = w.get("discarded", 0) + n
        w.setdefault("discarded_by_reason", {})[why] = n


def run_summary(
    buffers: Mapping[str, dict[str, Any]], workers: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The ``run_summary.json`` document (``exit_status`` follows from the counts)."""
    events_lost = sum(b["lost"] for b in buffers.values()) + sum(
        w["dropped"] for w in workers.values()
    )
    failed = sum(w["failed_processes"] for w in workers.values())
    reasons = []
    if failed:
        names = [n for n, w in workers.items() if w["failed_processes"]]
        reasons.append(f"{failed} process(es) failed (workers {', '.join(names)})")
    for name, b in buffers.items():
        for why, n in b["lost_by_reason"].items():
            if n:
                reasons.append(f"{n} event(s) lost in buffer '{name}': {why.replace('_', ' ')}")
    explain = {"sink_ended": "its sink had ended", "worker_error": "its function failed on them"}
    for name, w in workers.items():
        for why, n in w["dropped_by_reason"].items():
            if n:
                text = explain.get(why) or w.get("explain", {}).get(why) or why.replace("_", " ")
                reasons.append(f"{n} event(s) dropped by worker '{name}': {text}")
        for why, n in w.get("discarded_by_reason", {}).items():
            text = w.get("explain", {}).get(why) or why.replace("_", " ")
            reasons.append(f"{n} event(s) discarded on purpose by worker '{name}': {text}")
    return {
        "exit_status": 1 if failed or events_lost else 0,
        "events_lost": events_lost,
        "reasons": reasons,
        "buffers": dict(buffers),
        "workers": dict(workers),
    }


def write_run_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """Writes the summary as JSON (atomically: a temporary file renamed into place)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)


def chain_mismatch(summary: Mapping[str, Any], root: str, last_worker: str) -> int:
    """How far the books of a linear chain are from closing (0 when they balance).

    ``committed(root) - (read(last_worker) + Σ filtered_out + Σ discarded + events_lost)``
    (``discarded``: events a worker dropped on purpose, e.g. a publish link that keeps only the
    newest events).
    """
    committed = summary["buffers"][root]["committed"]
    filtered = sum(w["filtered_out"] + w.get("discarded", 0) for w in summary["workers"].values())
    last = summary["workers"][last_worker]
    read = last["read"] - last["dropped"]  # its drops are in events_lost
    return committed - (read + filtered + summary["events_lost"])
