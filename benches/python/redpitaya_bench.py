"""RedPitaya importer throughput against the fake MCPHA server on loopback, run by a real Control.

The fake server (``tests/fakes/redpitaya_mcpha.py``, in this process) streams 16384-sample x
2-channel waveforms (65 536 B of data + 400 B of discarded extra samples each); the importer
``importers.redpitaya.waveform`` receives them straight into the ring's slots; an exporter
counts them. Reports the sustained rate into the ring (waveforms/s between the commit stamps
of the first and last waveform), median of ``--repeat`` runs, plus the CPU load of the importer.

Run against an installed (release) mimocorb2: ``python benches/python/redpitaya_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from fakes.redpitaya_mcpha import FakeMcphaServer

FUNCS = '''
import time
from pathlib import Path
from mimocorb2 import Exporter

def count(io):
    """mimoCoRB2 Function: counts events and records the first and last commit stamps.

    Type
        Exporter
    """
    n = 0
    first = last = None
    for data, meta in Exporter(io):
        if first is None:
            first = float(meta["timestamp"][0])
        last = float(meta["timestamp"][0])
        n += 1
    Path(io.run_dir, "rate.txt").write_text(f"{n} {first} {last}")
'''

SAMPLES = 16384


def bench_setup(funcs: Path, target: Path, port: int, n: int, set_size: int) -> dict:
    return {
        "Buffers": {
            "osc": {
                "slot_count": 128,
                "data_length": SAMPLES,
                "data_dtype": {"IN1": "int16", "IN2": "int16"},
            }
        },
        "Workers": {
            "rp": {
                "function": "importers.redpitaya.waveform",
                "sinks": ["osc"],
                "config": {
                    "ip": "127.0.0.1",
                    "port": port,
                    "sample_rate": 4,
                    "trigger_level": 100,
                    "number_of_samples_before_trigger": 100,
                    "set_size": set_size,
                    "max_events": n,
                },
            },
            "count": {"file": str(funcs), "function": "count", "sources": ["osc"]},
        },
        "target_directory": str(target),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--waveforms", type=int, default=50_000)
    ap.add_argument("--set-size", type=int, default=100)
    args = ap.parse_args()
    from mimocorb2.control import Control

    rates = []
    cpu = []
    with tempfile.TemporaryDirectory() as tmp:
        funcs = Path(tmp) / "bench_funcs.py"
        funcs.write_text(FUNCS)
        for _ in range(args.repeat):
            with FakeMcphaServer(lifetime=600) as server:
                setup = bench_setup(funcs, Path(tmp), server.port, args.waveforms, args.set_size)
                control = Control(setup, tmp, "stats")
                control()
                assert control.exit_code == 0, control.failures()
                assert not server.errors, server.errors
            n, first, last = (Path(control.run_dir) / "rate.txt").read_text().split()
            rates.append((int(n) - 1) / (float(last) - float(first)))
            procs = {p["worker"]: p for p in control._procs}
            rp = procs.get("rp")
            if rp is not None and last != first:
                cpu.append(100 * rp["cpu_seconds"] / (float(last) - float(first)))
            print(f"  run: {int(n)} waveforms, {rates[-1]:8.0f} waveforms/s", flush=True)
    mb = statistics.median(rates) * SAMPLES * 4 / 1e6
    print(
        f"redpitaya mcpha 16384x2 int16: median {statistics.median(rates):8.0f} waveforms/s "
        f"({mb:.0f} MB/s into the ring)  runs {[round(r) for r in rates]}"
    )
    if cpu:
        print(f"  importer CPU: median {statistics.median(cpu):.0f} % of one core")


if __name__ == "__main__":
    main()
