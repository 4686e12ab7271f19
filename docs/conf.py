"""Sphinx configuration of the mimocorb2 documentation site.

Build: ``sphinx-build -W docs docs/_build/html`` (``pip install ".[docs]"`` first). CI also runs
the ``doctest`` builder (the examples of the pages run against the installed package) and the
``linkcheck`` builder.
"""

from __future__ import annotations

import os

# Autodoc imports the package; nothing of it may need a display or write a run report.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MIMOCORB2_REPORT", "0")

from mimocorb2 import __version__  # after the environment is set

project = "mimocorb2"
author = "the mimocorb2 developers"
copyright = "the mimocorb2 developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"mimocorb2 {release}"
myst_heading_anchors = 3

# ----- autodoc -----
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# ----- cross-references: every reference must resolve (-n), except these -----
nitpicky = True
nitpick_ignore_regex = [
    # Other projects' objects (numpy, the standard library): CI has no internet, so there are no
    # intersphinx inventories to resolve them against.
    (
        r"py:.*",
        r"(np|numpy|collections\.abc|pathlib|os|logging|typing|types|pickle|zlib|socket|"
        r"threading|multiprocessing|queue|io|subprocess|h5py|pyarrow|uproot|zmq)(\..+)?",
    ),
    (r"py:class", r"(Path|Any|Mapping|Sequence|Callable|Iterator|Iterable|Generator)"),
    # The private modules (mimocorb2._*) are not part of the documented API; docstrings of the
    # public ones still name them, and the errors they define, for developers.
    (r"py:.*", r"mimocorb2\._.+"),
    (r"py:exc", r"(ConfigError|RemoteError|DeviceError)"),
]

# ----- doctest -----
# The examples of the pages (``doctest``/``testcode`` blocks) run against the installed
# package. The ``>>>`` examples inside docstrings are illustrations (they use run directories
# and files that do not exist here) and are not run.
doctest_test_doctest_blocks = ""

# ----- linkcheck -----
# CI reaches only the package registries, so external links cannot be checked there; the
# internal ones (documents, sections, API objects) are checked by every build (-n -W).
linkcheck_ignore = [r"https?://.*"]
