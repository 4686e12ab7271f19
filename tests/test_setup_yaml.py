"""YAML messages of setup and config files: the file, the right line, plain words."""

from pathlib import Path

import pytest
import yaml

from mimocorb2._config import ConfigError, load_config
from mimocorb2._setup import load_setup_file
from mimocorb2._yaml_load import YamlError, load_yaml_text
from mimocorb2.exceptions import SetupValidationError

VALID = """\
Buffers:
  raw:
    slot_count: 16
    data_length: 1
    data_dtype: {value: int64}
Workers:
  source:
    function: exporters.drain
    sources: [raw]
"""

LOADERS = [yaml.SafeLoader]
if hasattr(yaml, "CSafeLoader"):
    LOADERS.append(yaml.CSafeLoader)


# (text, line, words expected in the message)
BROKEN = [
    pytest.param(
        VALID.replace("    data_length: 1", "   data_length: 1"),
        4,
        "the indentation does not match the lines above",
        id="indent-less",
    ),
    pytest.param(
        VALID.replace("    data_length: 1", "      data_length: 1"),
        4,
        "the indentation does not match the lines above",
        id="indent-more",
    ),
    pytest.param(
        VALID.replace("    sources: [raw]", "  sources: [raw]\n   x: 1"),
        10,
        "the indentation does not match the lines above",
        id="indent-after-dedent",
    ),
    pytest.param(
        VALID.replace("    slot_count: 16", "    slot_count 16"), 3, "has no ':'", id="no-colon"
    ),
    pytest.param(
        VALID.replace("function: exporters.drain", "function: a: b"),
        8,
        "quotes around a value that contains ': '",
        id="second-colon",
    ),
    pytest.param(
        VALID.replace("    slot_count: 16", "\tslot_count: 16"), 3, "tab character", id="tab"
    ),
    pytest.param(
        VALID.replace("sources: [raw]", "sources: [raw"), 9, "never closed with ']'", id="bracket"
    ),
    pytest.param(
        VALID.replace("data_dtype: {value: int64}", "data_dtype: {value: int64"),
        5,
        "never closed with '}'",
        id="brace",
    ),
    pytest.param(
        VALID.replace("function: exporters.drain", "function: 'exporters.drain"),
        8,
        "quote opened on this line is never closed",
        id="quote",
    ),
    pytest.param(
        VALID.replace("sources: [raw]", "sources: *raw"), 9, "alias *raw has no anchor", id="alias"
    ),
    pytest.param(VALID + "    sinks:\n    -out\n    - b\n", 11, "space after the '-'", id="dash"),
]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("text", "line", "words"), BROKEN)
def test_syntax_errors_name_file_and_line_in_plain_words(text, line, words, loader):
    with pytest.raises(YamlError) as info:
        load_yaml_text(text, "my_setup.yaml", loader)
    (message,) = info.value.problems
    assert message.startswith(f"my_setup.yaml, line {line}: not valid YAML: ")
    assert words in message
    for jargon in ("<unicode string>", "block mapping", "<block end>", "scanning", "token"):
        assert jargon not in message


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_duplicate_keys_name_both_lines(loader):
    text = VALID.replace("    data_length: 1", "    data_length: 1\n    slot_count: 32")
    text += "  source:\n    function: exporters.drain\n"
    with pytest.raises(YamlError) as info:
        load_yaml_text(text, "s.yaml", loader)
    assert info.value.problems == [
        "s.yaml, lines 3 and 5: the key 'slot_count' is written twice in the same mapping; "
        "keep one of them",
        "s.yaml, lines 8 and 11: the key 'source' is written twice in the same mapping; "
        "keep one of them",
    ]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_merge_keys_may_be_overridden_and_equal_keys_elsewhere_are_fine(loader):
    text = "x: &x {a: 1, b: 2}\ny:\n  <<: *x\n  a: 3\nz: {a: 1}\n"
    assert load_yaml_text(text, "s.yaml", loader) == {
        "x": {"a": 1, "b": 2},
        "y": {"a": 3, "b": 2},
        "z": {"a": 1},
    }


def test_setup_file_duplicate_key_is_a_setup_error(tmp_path: Path):
    setup = tmp_path / "setup.yaml"
    setup.write_text(VALID + "  source:\n    function: exporters.drain\n    sources: [raw]\n")
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(setup)
    assert info.value.errors == [
        f"{setup}, lines 7 and 10: the key 'source' is written twice in the same mapping; "
        "keep one of them"
    ]


def test_setup_file_syntax_error_names_the_file(tmp_path: Path):
    setup = tmp_path / "setup.yaml"
    setup.write_text(VALID.replace("    data_length: 1", "   data_length: 1"))
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(setup)
    assert str(setup) in str(info.value)
    assert "line 4: not valid YAML: the indentation does not match" in str(info.value)


def test_config_file_errors_name_the_config_file(tmp_path: Path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml, lines 1 and 3: the key 'a' is written"):
        load_config("cfg.yaml", tmp_path, "worker 'w': config")
    cfg.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml, line 1: not valid YAML: a '\['"):
        load_config("cfg.yaml", tmp_path, "worker 'w': config")
