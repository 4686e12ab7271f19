"""What a user reads in the terminal: failures, log lines, summaries, the stats table."""

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mimocorb2._recent import RecentDeadtime
from mimocorb2._terminal import stats_table, status_text, summary_text
from mimocorb2.control import PARTIAL_MARKER

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"


def write_setup(tmp_path: Path, n_events: int = 400, double_config: dict | None = None) -> Path:
    buffer = {"slot_count": 16, "data_length": 1, "data_dtype": {"value": "int64"}}
    setup = {
        "Buffers": {"raw": dict(buffer), "doubled": dict(buffer)},
        "Workers": {
            "source": {
                "file": str(WORKERS),
                "function": "source",
                "config": {"n_events": n_events, "sleep": 0.0 if n_events >= 0 else 0.002},
                "sinks": ["raw"],
            },
            "double": {
                "file": str(WORKERS),
                "function": "double",
                "number_of_processes": 2,
                "config": double_config or {},
                "sources": ["raw"],
                "sinks": ["doubled"],
            },
            "collect": {"file": str(WORKERS), "function": "collect", "sources": ["doubled"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    return path


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mimocorb2", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=40,
    )


def run_dir_of(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def test_failed_worker_traceback_once_summary_names_it_results_marked_partial(tmp_path):
    r = run_cli(str(write_setup(tmp_path, double_config={"fail_at": 100})), "-c", "stats")
    assert r.returncode == 1
    everything = r.stdout + r.stderr
    # the user's line of the traceback appears once (live), not again in the summary
    assert everything.count('raise ValueError(f"bad value {v}")') == 1, everything
    assert everything.count("Traceback (most recent call last)") <= 2  # one chained traceback
    summary = [line for line in r.stderr.splitlines() if "failed: process double_" in line]
    assert len(summary) == 1, r.stderr
    assert summary[0].startswith("mimocorb2: worker 'double' failed: process double_")
    assert "ended with exit code 1" in summary[0] and "bad value 100" in summary[0]
    assert "traceback is above and in logs/double.log" in summary[0]
    final = r.stderr.strip().splitlines()[-1]
    assert "run finished: FAILED (worker double failed)" in final
    assert "PARTIAL" in final
    marker = run_dir_of(tmp_path) / PARTIAL_MARKER
    assert "partial: worker double failed" in marker.read_text()


def test_log_lines_name_the_worker_once_and_no_dot_warning(tmp_path):
    r = run_cli(str(write_setup(tmp_path, double_config={"fail_at": 100})), "-c", "stats")
    error_lines = [line for line in r.stdout.splitlines() if "ERROR" in line]
    assert error_lines, r.stdout
    for line in error_lines:
        assert line.count("double") == 1, line  # only the [double_N] prefix
    log = (run_dir_of(tmp_path) / "logs" / "double.log").read_text()
    assert "ERROR: the worker function raised an exception" in log
    assert "graphviz" not in r.stderr  # optional; said once in the README, not on every run


def test_short_run_prints_a_final_summary(tmp_path):
    r = run_cli(str(write_setup(tmp_path, n_events=300)), "-c", "stats")
    assert r.returncode == 0, r.stderr
    summary = [line for line in r.stdout.splitlines() if line.startswith("summary:")]
    assert len(summary) == 1, r.stdout
    assert "raw: 300 events" in summary[0]
    assert "dead time" in summary[0] and "(whole run)" in summary[0]
    assert not (run_dir_of(tmp_path) / PARTIAL_MARKER).exists()
    assert "run finished; results in" in r.stderr


def test_shutdown_workers_is_stopped_by_user_not_a_failure(tmp_path):
    path = write_setup(tmp_path, n_events=-1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimocorb2", str(path), "-c", "kbd"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        _out, err = proc.communicate("shutdown workers\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "processes stopped by the user: source (1), double (2), collect (1)" in err, err
    assert "signal 15" not in err and "failed" not in err
    assert "run finished: stopped by the user" in err and "PARTIAL" in err
    # Stopped processes are no failures; the exit status is 1 only if events were lost in
    # flight when they were stopped (issue 10: every loss is reported), else 0.
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert all(w["failed_processes"] == 0 for w in summary["workers"].values())
    assert summary["workers"]["double"]["stopped_by_user"] == 2
    assert proc.returncode == summary["exit_status"] == (1 if summary["events_lost"] else 0)


def test_stats_command_prints_a_table(tmp_path):
    path = write_setup(tmp_path, n_events=-1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimocorb2", str(path), "-c", "kbd"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        out, _err = proc.communicate("stats\nshutdown roots\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "{" not in out and '"buffers"' not in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("buffer "))
    assert lines[header].split()[:3] == ["buffer", "events", "rate/Hz"]
    assert any(line.startswith("raw *") for line in lines[header + 1 : header + 3])
    worker_header = next(i for i, line in enumerate(lines) if line.startswith("worker "))
    assert lines[worker_header].split() == ["worker", "alive", "CPU/%", "restarts", "ended"]
    assert lines[worker_header + 2].split()[:2] == ["double", "2/2"]


def fake_stats(**buffer) -> dict:
    b = {
        "event_count": 5000,
        "rate": 1000.0,
        "filled_slots": 0.25,
        "average_deadtime": 0.45,
        "recent_deadtime": 0.01,
        "paused": False,
        "paused_count": 0,
        "flush_event_received": False,
        "lost": 0,
        "overwritten": 0,
    }
    b.update(buffer)
    return {
        "buffers": {"raw": b},
        "workers": {"double": {"processes": 1, "cpu_percent": 12.5, "restarts": 0, "failed": 1}},
        "time_active": 5.0,
        "total_processes_alive": 2,
    }


def test_status_line_shows_recent_dead_time_and_paused_discards_summary_the_whole_run():
    line = status_text(fake_stats(paused=True, paused_count=77), ["raw"])
    assert "dead 1.0% (last 10 s)" in line and "45" not in line
    assert "PAUSED" in line and "77 discarded in pause" in line
    summary = summary_text(fake_stats(paused_count=77), ["raw"])
    assert summary == (
        "summary: 5.0 s | raw: 5000 events, 1000 Hz mean, dead time 45.0% (whole run), "
        "77 discarded while paused"
    )


def test_stats_table_layout():
    text = stats_table(fake_stats(), ["raw"], {"double": 2})
    lines = text.splitlines()
    assert lines[2].split() == [
        "buffer",
        "events",
        "rate/Hz",
        "fill/%",
        "dead/%",
        "(10",
        "s)",
        "dead/%",
        "(run)",
        "lost",
        "paused",
        "state",
    ]
    assert lines[3].split() == [
        "raw",
        "*",
        "5000",
        "1000.0",
        "25",
        "1.0",
        "45.0",
        "0",
        "0",
        "running",
    ]
    assert lines[5].split() == ["worker", "alive", "CPU/%", "restarts", "ended"]
    assert lines[6].split() == ["double", "1/2", "12.5", "0", "1", "failed"]


def test_recent_dead_time_forgets_a_start_up_stall():
    recent = RecentDeadtime(window=10.0)
    assert recent.update("b", 0.0, {"event_count": 0, "mean_event_deadtime": 0.0}) == 0.0
    # a stall: 10 events with dead time 0.9 in the first second
    assert recent.update("b", 1.0, {"event_count": 10, "mean_event_deadtime": 0.9}) == 0.9
    # then 1000 events/s with no dead time: the stall leaves the window after 10 s
    events, summed = 10, 9.0
    for t in range(2, 31):
        events += 1000
        stats = {"event_count": events, "mean_event_deadtime": summed / events}
        value = recent.update("b", float(t), stats)
        assert (value > 0.0) == (t <= 10), (t, value)
    assert value == 0.0
    # a new stall shows at once
    events += 100
    summed += 100 * 0.5
    value = recent.update(
        "b", 31.0, {"event_count": events, "mean_event_deadtime": summed / events}
    )
    assert 0.004 < value < 0.006  # 100 of 10100 events in the window at 0.5


class Screen:
    """A tiny terminal: enough of VT100 for the live status line (\\r \\n K nA 7 8)."""

    def __init__(self):
        self.lines = [""]
        self.row = self.col = 0
        self.saved = (0, 0)

    def write(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            if text.startswith("\0337", i):
                self.saved = (self.row, self.col)
                i += 2
                continue
            if text.startswith("\0338", i):
                self.row, self.col = self.saved
                i += 2
                continue
            if text.startswith("\033[", i):
                j = i + 2
                while not text[j].isalpha():
                    j += 1
                arg, cmd = text[i + 2 : j], text[j]
                if cmd == "K":
                    self.lines[self.row] = self.lines[self.row][: self.col]
                elif cmd == "A":
                    self.row = max(0, self.row - int(arg or 1))
                i = j + 1
                continue
            if c == "\r":
                self.col = 0
            elif c == "\n":
                self.row += 1
                self.col = 0
                if self.row == len(self.lines):
                    self.lines.append("")
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + c + line[self.col + 1 :]
                self.col += 1
            i += 1

    def type(self, text: str) -> None:  # the terminal echoes what the user types
        self.write(text)

    def flush(self) -> None:
        pass


def test_live_status_line_never_overwrites_typed_input():
    from mimocorb2._terminal import PROMPT, LiveScreen

    screen = Screen()
    typed = []
    live = LiveScreen(screen, lambda: "".join(typed), width=lambda: 80)
    live.set_status("status 1")
    live.start_reading()
    screen.write(PROMPT)  # input() shows the prompt
    for c in "pau":
        typed.append(c)
        screen.type(c)
    live.set_status("status 2")
    assert screen.lines[-2:] == ["status 2", PROMPT + "pau"]
    assert (screen.row, screen.col) == (len(screen.lines) - 1, len(PROMPT) + 3)
    live.print("[filter_0]  passing event 100")
    assert screen.lines[-3:] == ["[filter_0]  passing event 100", "status 2", PROMPT + "pau"]
    for c in "se roots":
        typed.append(c)
        screen.type(c)
    live.set_status("status 3 PAUSED")
    assert screen.lines[-1] == PROMPT + "pause roots"
    screen.write("\n")  # Enter
    typed.clear()
    live.entered("pause roots")
    live.print("mimocorb2: pause roots")
    live.start_reading()
    screen.write(PROMPT)
    assert screen.lines[-4:] == [
        PROMPT + "pause roots",
        "mimocorb2: pause roots",
        "status 3 PAUSED",
        PROMPT,
    ]
    live.close()
    assert screen.lines[-2:] == ["status 3 PAUSED", ""]


def test_typing_across_status_refreshes_on_a_terminal(tmp_path):
    import os
    import pty
    import select
    import signal

    path = write_setup(tmp_path, n_events=-1)
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a real terminal
        os.execv(sys.executable, [sys.executable, "-m", "mimocorb2", str(path), "-c", "kbd"])

    def read_until(needle: str, timeout: float = 20.0) -> str:
        buf = ""
        end = time.monotonic() + timeout
        while needle not in buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise AssertionError(f"{needle!r} not seen; got:\n{buf[-2000:]!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            buf += chunk.decode(errors="replace")
        return buf

    try:
        read_until("mimocorb2> ")
        os.write(fd, b"sta")
        # two status refreshes while "sta" is on the input line: only the line above changes
        after = read_until("\0338")
        after += read_until("\0338")
        assert "\0337\033[1A\r\033[K" in after and "ev" in after
        os.write(fd, b"ts\n")
        out = read_until("restarts")  # the table of the 'stats' command
        assert "mimocorb2> stats" in out
        os.write(fd, b"shutdown roots\n")
        read_until("run finished")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_no_display_note_once_per_run(tmp_path):
    import os

    path = write_setup(tmp_path, n_events=200)
    setup = yaml.safe_load(path.read_text())
    setup["Workers"]["scope"] = {"function": "observers.oscilloscope", "observes": ["raw"]}
    setup["Workers"]["scope2"] = {"function": "observers.oscilloscope", "observes": ["doubled"]}
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    for mode in ([], ["-c", "gui"]):  # the default (terminal), and a GUI asked for
        r = subprocess.run(
            [sys.executable, "-m", "mimocorb2", str(path), *mode],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=40,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        everything = r.stdout + r.stderr
        assert everything.count("neither DISPLAY nor WAYLAND_DISPLAY is set") == 1, everything
        assert "the plot workers scope, scope2 are skipped" in r.stderr
