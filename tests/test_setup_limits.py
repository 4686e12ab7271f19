"""Bad setups are setup errors with short messages, never crashes, hangs or memory blow-ups.

Regression tests of issue 12 (setup files): alias bombs, values beyond what the core holds,
deep nesting, unusable paths, names that would become file names, the libyaml loader.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mimocorb2.__main__ import main
from mimocorb2._limits import (
    MAX_PROCESSES,
    MAX_RESTARTS,
    MAX_SLOTS,
    MAX_WRITERS,
    name_problem,
    preview,
)
from mimocorb2._setup import load_setup_file, parse_setup
from mimocorb2._setup_validate import MAX_ERRORS
from mimocorb2._yaml_limits import MAX_DEPTH, MAX_NODES, SAFE_LOADER, structure_problem
from mimocorb2._yaml_load import YamlError, load_yaml_text
from mimocorb2.exceptions import SetupValidationError

BASE = """\
Buffers:
  raw:
    slot_count: 8
    data_length: 4
    data_dtype: {x: float32}
Workers:
  gen:
    function: exporters.drain
    sources: [raw]
  fill:
    function: exporters.drain
    sources: [raw]
    sinks: [raw]
"""


def base() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def problems(setup: Any, tmp_path: Path) -> list[str]:
    with pytest.raises(SetupValidationError) as info:
        parse_setup(setup, tmp_path, "s.yaml")
    return info.value.errors


def one_problem(setup: Any, tmp_path: Path, *parts: str) -> str:
    errors = problems(setup, tmp_path)
    assert len(errors) == 1, errors
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def test_base_is_valid(tmp_path: Path) -> None:
    setup = parse_setup(base(), tmp_path)
    assert setup.buffers["raw"].slot_count == 8


# ---- previews ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        10**5000,
        -(10**5000),
        "x" * 1_000_000,
        b"\0" * 1_000_000,
        [[[[[[[1] * 10] * 10] * 10] * 10] * 10] * 10] * 10,
        {"a": {"b": {"c": {"d": {"e": 1}}}}},
        [float("nan"), float("inf")],
    ],
    ids=["huge-int", "huge-negative-int", "long-str", "long-bytes", "bomb", "deep", "floats"],
)
def test_preview_is_short_and_fast(value: Any) -> None:
    start = time.perf_counter()
    text = preview(value)
    assert time.perf_counter() - start < 0.1
    assert len(text) <= 60


def test_preview_of_huge_int_says_how_big() -> None:
    assert preview(10**5000) == "<integer of 5001 digits>"


# ---- alias bomb ----------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    lines = ['lol0_template: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"lol{i}_template: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_message_quotes_a_short_prefix(tmp_path: Path) -> None:
    text = alias_bomb(8) + BASE.replace("slot_count: 8", "slot_count: *a8")
    (tmp_path / "s.yaml").write_text(text)
    start = time.perf_counter()
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(tmp_path / "s.yaml")
    assert time.perf_counter() - start < 10
    (problem,) = info.value.errors
    assert "key 'slot_count'" in problem and "expected a whole number" in problem
    assert len(problem) < 300


def test_alias_bomb_in_every_key_is_fast(tmp_path: Path) -> None:
    text = alias_bomb(8) + textwrap.dedent(
        """\
        Buffers:
          raw: {slot_count: *a8, data_length: *a8, data_dtype: {x: *a8}, overwrite: *a8}
        Workers:
          gen:
            function: *a8
            config: *a8
            sinks: *a8
            sources: [*a8]
            number_of_processes: *a8
            restart: *a8
            max_restarts: *a8
        target_directory: *a8
        """
    )
    (tmp_path / "s.yaml").write_text(text)
    start = time.perf_counter()
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(tmp_path / "s.yaml")
    assert time.perf_counter() - start < 10
    assert len(str(info.value)) < 8000  # 22 problems, each naming the (temporary) file


def test_alias_bomb_cli_time_and_memory(tmp_path: Path) -> None:
    """The issue's case: 8 alias levels took 58 s and 3.5 GB; now well under a second."""
    setup = tmp_path / "s.yaml"
    setup.write_text(alias_bomb(8) + BASE.replace("slot_count: 8", "slot_count: *a8"))
    script = textwrap.dedent(
        f"""
        import re, sys
        from mimocorb2.__main__ import main
        code = main([{str(setup)!r}, "-c", "stats"])
        # VmHWM: this process's own peak (ru_maxrss would include the forking parent's)
        status = open("/proc/self/status").read()
        print(code, re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
        """
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=True
    )
    elapsed = time.perf_counter() - start
    code, max_rss_kb = out.stdout.split()
    assert code == "2"
    assert int(max_rss_kb) < 200 * 1024
    assert elapsed < 30
    assert len(out.stderr) < 3000


def test_merge_key_bomb_stays_small() -> None:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 30):
        refs = ", ".join([f"*m{i - 1}"] * 10)
        lines.append(f"m{i}: &m{i} {{<<: [{refs}], c{i}: {i}}}")
    start = time.perf_counter()
    data = load_yaml_text("\n".join(lines), "s.yaml")
    assert time.perf_counter() - start < 5
    assert data["m29"]["a"] == 1 and data["m29"]["c29"] == 29 and len(data["m29"]) == 31


@pytest.mark.parametrize(
    "text",
    [
        "a: &a {x: 1, y: 2}\nb: {<<: [*a, {x: 3, z: 4}], y: 5}\n",
        "a: &a {x: 1, y: 2}\nb: {y: 0, <<: *a, x: 9}\n",
        "a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: [*b, *a], z: 3}\n",
        "a: &a {p: 1, q: 2}\nb:\n  <<: *a\n  r: 3\n",
    ],
)
def test_merge_keys_keep_pyyaml_semantics(text: str) -> None:
    ours = load_yaml_text(text, "s.yaml")
    theirs = yaml.load(text, Loader=yaml.SafeLoader)
    assert ours == theirs
    assert [list(v) for v in ours.values()] == [list(v) for v in theirs.values()]


# ---- the libyaml loader ----------------------------------------------------------------------


def test_libyaml_loader_is_used_when_present() -> None:
    if hasattr(yaml, "CSafeLoader"):
        assert issubclass(SAFE_LOADER, yaml.CSafeLoader)
    else:  # pragma: no cover - PyYAML built without libyaml
        assert issubclass(SAFE_LOADER, yaml.SafeLoader)


@pytest.mark.parametrize(
    "path",
    sorted(str(p) for p in Path(__file__).parents[1].glob("examples/**/*.yaml"))
    + sorted(str(p) for p in Path(__file__).parent.glob("setups/**/*.yaml")),
)
def test_same_values_as_the_pure_python_loader(path: str) -> None:
    text = Path(path).read_text()
    assert load_yaml_text(text, path) == yaml.load(text, Loader=yaml.SafeLoader)


def test_scalars_resolve_as_yaml_1_1() -> None:
    text = "a: no\nb: 0x10\nc: 1_000\nd: 1e3\ne: 1.5e3\nf: ~\ng: 2001-12-14\nh: '5'\ni: 0o17\n"
    assert load_yaml_text(text, "s") == yaml.load(text, Loader=yaml.SafeLoader)


def test_a_one_megabyte_setup_loads_within_seconds(tmp_path: Path) -> None:
    config = "{" + ", ".join(f"key_{i}: {i}" for i in range(45_000)) + "}"
    text = BASE.replace(
        "function: exporters.drain\n    sources: [raw]\n  fill",
        "function: exporters.drain\n    sources: [raw]\n    config: " + config + "\n  fill",
        1,
    )
    assert len(text) > 600_000
    (tmp_path / "s.yaml").write_text(text)
    start = time.perf_counter()
    setup = load_setup_file(tmp_path / "s.yaml")
    assert time.perf_counter() - start < 20  # about 1 s on an idle machine
    assert setup.workers["gen"].config["key_44999"] == 44999


def test_too_many_values_is_refused_before_building() -> None:
    text = "x: [" + ", ".join(["1"] * (MAX_NODES + 10)) + "]\n"
    start = time.perf_counter()
    with pytest.raises(YamlError, match=f"more than {MAX_NODES} values"):
        load_yaml_text(text, "s.yaml")
    assert time.perf_counter() - start < 10


# ---- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000, 1_000_000])
def test_deep_nesting_is_a_setup_error(depth: int, tmp_path: Path) -> None:
    text = BASE + "base_config: {x: " + "[" * depth + "]" * depth + "}\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(tmp_path / "s.yaml")
    (problem,) = info.value.errors
    # Our pre-scan, or libyaml's own limit (PyYAML >= 6.0.4) for the deepest documents.
    assert f"nested more than {MAX_DEPTH} levels" in problem or "nesting depth" in problem
    assert "line 14" in problem


def test_deep_block_nesting() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    with pytest.raises(YamlError, match="nested more than"):
        load_yaml_text(text, "s.yaml")


def test_nesting_through_aliases_counts() -> None:
    text = "a0: &a0 " + "[" * 20 + "]" * 20 + "\n"
    for i in range(1, 10):
        text += f"a{i}: &a{i} " + "[" * 19 + f"*a{i - 1}" + "]" * 19 + "\n"
    found = structure_problem(text)
    assert found is not None and "through the alias" in found[1]


def test_allowed_nesting_loads() -> None:
    depth = MAX_DEPTH - 1
    data = load_yaml_text("x: " + "[" * depth + "]" * depth, "s.yaml")
    assert isinstance(data["x"], list)


def test_invalid_yaml_is_left_to_the_loader_message() -> None:
    assert structure_problem("x: [unclosed") is None
    with pytest.raises(YamlError, match="never closed"):
        load_yaml_text("x: [unclosed", "s.yaml")


# ---- values beyond what the core holds -----------------------------------------------------


@pytest.mark.parametrize(
    ("place", "key", "value", "limit"),
    [
        ("buffer", "slot_count", 2**32, MAX_SLOTS),
        ("buffer", "slot_count", MAX_SLOTS + 1, MAX_SLOTS),
        ("buffer", "data_length", 10**30, 1 << 40),
        ("worker", "number_of_processes", 2**40, MAX_PROCESSES),
        ("worker", "max_restarts", 2**40, MAX_RESTARTS),
    ],
)
def test_value_beyond_the_core_is_a_setup_error(
    place: str, key: str, value: int, limit: int, tmp_path: Path
) -> None:
    setup = base()
    entry = setup["Buffers"]["raw"] if place == "buffer" else setup["Workers"]["gen"]
    entry[key] = value
    problem = one_problem(setup, tmp_path, f"key '{key}'", f"limit of {limit}")
    assert "write a number" in problem or "reduce data_length" in problem


def test_limits_are_allowed(tmp_path: Path) -> None:
    setup = base()
    setup["Buffers"]["raw"]["slot_count"] = MAX_SLOTS
    setup["Workers"]["gen"]["max_restarts"] = MAX_RESTARTS
    setup["Workers"]["gen"]["number_of_processes"] = MAX_PROCESSES
    parsed = parse_setup(setup, tmp_path)
    assert parsed.workers["gen"].number_of_processes == MAX_PROCESSES


def test_writers_of_one_buffer_are_limited(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["fill"]["number_of_processes"] = MAX_WRITERS
    setup["Workers"]["more"] = {
        "function": "exporters.drain",
        "sources": ["raw"],
        "sinks": ["raw"],
    }
    one_problem(setup, tmp_path, "buffer 'raw'", f"{MAX_WRITERS + 1} processes write it")


def test_huge_item_size_is_a_setup_error(tmp_path: Path) -> None:
    setup = base()
    setup["Buffers"]["raw"]["data_dtype"] = {"x": "V2147483647"}
    setup["Buffers"]["raw"]["data_length"] = 1000
    one_problem(setup, tmp_path, "key 'data_length'", "per slot")


def test_dtype_field_that_is_not_a_type_name(tmp_path: Path) -> None:
    setup = base()
    bomb: Any = ["lol"] * 10
    for _ in range(7):
        bomb = [bomb] * 10
    setup["Buffers"]["raw"]["data_dtype"] = {"x": bomb}
    start = time.perf_counter()
    problem = one_problem(setup, tmp_path, "field 'x'", "not a numpy data type")
    assert time.perf_counter() - start < 1
    assert len(problem) < 400


def test_too_many_dtype_fields(tmp_path: Path) -> None:
    setup = base()
    setup["Buffers"]["raw"]["data_dtype"] = {f"f{i}": "f4" for i in range(5000)}
    one_problem(setup, tmp_path, "key 'data_dtype'", "limit of 1000")


def test_dtype_description_too_long_for_the_core(tmp_path: Path) -> None:
    setup = base()
    setup["Buffers"]["raw"]["data_dtype"] = {f"field_{'x' * 40}_{i}": "f4" for i in range(400)}
    one_problem(setup, tmp_path, "key 'data_dtype'", "limit of 8192")


def test_over_long_function_name(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["function"] = "exporters." + "d" * 100_000
    problem = one_problem(setup, tmp_path, "key 'function'", "limit of 200")
    assert len(problem) < 400


# ---- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../../x", "a/b", "a\0b", "..", ".hidden", "a b", "x" * 241, "tab\t", "ümlaut", "a:b"],
)
@pytest.mark.parametrize("kind", ["worker", "buffer"])
def test_names_must_be_plain(name: str, kind: str, tmp_path: Path) -> None:
    setup = base()
    if kind == "worker":
        setup["Workers"][name] = setup["Workers"].pop("gen")
    else:
        setup["Buffers"][name] = setup["Buffers"].pop("raw")
        for w in setup["Workers"].values():
            for key in ("sources", "sinks"):
                w[key] = [name if b == "raw" else b for b in w.get(key, [])]
    problem = one_problem(setup, tmp_path, f"{kind} name")
    assert len(problem) < 400
    assert "rename it" in problem or "shorter name" in problem


@pytest.mark.parametrize("name", ["raw", "Raw_2", "a.b-c", "x" * 240, "-x", "0"])
def test_plain_names_are_fine(name: str) -> None:
    assert name_problem(name, "worker") is None


def test_no_file_outside_the_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    setup = base()
    setup["Workers"]["../../../escaped"] = setup["Workers"].pop("gen")
    setup["target_directory"] = str(tmp_path / "runs" / "deep")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(setup))
    assert main([str(tmp_path / "s.yaml"), "-c", "stats"]) == 2
    assert "worker name '../../../escaped'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["s.yaml"]


# ---- paths ---------------------------------------------------------------------------------


def test_over_long_file_names_the_key_and_file(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["file"] = "a" * 5000 + ".py"
    problem = one_problem(setup, tmp_path, "worker 'gen', key 'file'", "File name too long")
    assert "aaaa" in problem and len(problem) < 400


def test_nul_in_file_names_the_key(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["file"] = "a\0b.py"
    one_problem(setup, tmp_path, "worker 'gen', key 'file'", "cannot be used")


def test_unreadable_config_names_the_key_and_file(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["config"] = "/proc/self/mem"  # a regular file that gives EIO
    one_problem(setup, tmp_path, "worker 'gen', key 'config'", "/proc/self/mem", "cannot be read")


def test_over_long_config_and_target_directory(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["config"] = "c" * 5000 + ".yaml"
    setup["base_config"] = "b\0.yaml"
    setup["target_directory"] = "t" * 5000
    errors = problems(setup, tmp_path)
    assert len(errors) == 3, errors
    assert any("key 'base_config'" in e and "'b\\x00.yaml'" in e for e in errors)
    assert any("worker 'gen', key 'config'" in e and "File name too long" in e for e in errors)
    assert any("key 'target_directory'" in e and "File name too long" in e for e in errors)
    assert all(len(e) < 400 for e in errors)


def test_config_file_too_large(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(17 * 1024 * 1024)
    setup = base()
    setup["Workers"]["gen"]["config"] = "big.yaml"
    one_problem(setup, tmp_path, "key 'config'", "larger than the limit")


def test_setup_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_bytes(BASE.encode() + b"# \xff\xfe\n")
    with pytest.raises(SetupValidationError, match="not UTF-8"):
        load_setup_file(tmp_path / "s.yaml")


# ---- many problems -------------------------------------------------------------------------


def test_problem_list_is_bounded(tmp_path: Path) -> None:
    setup = base()
    setup["Workers"]["gen"]["sources"] = [1] * 50_000
    for i in range(1000):
        setup[f"unknown_{i}"] = i
    start = time.perf_counter()
    errors = problems(setup, tmp_path)
    assert time.perf_counter() - start < 10
    assert len(errors) == MAX_ERRORS + 1
    assert "more problem(s) not listed" in errors[-1]


# ---- the CLI exits with 2, no traceback ----------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        ("slot_count: 8", "slot_count: 4294967296"),
        ("data_length: 4", "data_length: 1000000000000000000000000000000"),
        (
            "    sources: [raw]\n  fill",
            "    sources: [raw]\n    number_of_processes: 1099511627776\n  fill",
        ),
        (
            "    sources: [raw]\n  fill",
            "    sources: [raw]\n    max_restarts: 1099511627776\n  fill",
        ),
        ("  gen:", '  "g\\0en":'),
        ("  gen:", "  ../../../x:"),
        ("Workers:", "base_config: {x: " + "[" * 1000 + "]" * 1000 + "}\nWorkers:"),
    ],
    ids=["slots", "data_length", "processes", "max_restarts", "nul", "dots", "deep"],
)
def test_cli_exit_code_2(
    change: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = BASE.replace(*change)
    assert text != BASE
    (tmp_path / "s.yaml").write_text(text)
    assert main([str(tmp_path / "s.yaml"), "-c", "stats"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "1 problem(s)" in err
    assert len(err) < 1000
