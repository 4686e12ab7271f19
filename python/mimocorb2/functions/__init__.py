"""Prebuilt worker functions, used in a setup as ``function: <module>.<name>`` without ``file``.

Modules: ``analyzers``, ``data``, ``exporters``, ``misc``, ``observers``, ``visualizers`` (and
``importers`` for hardware, ``network`` to join runs on different hosts). They are imported on
demand, so a worker only loads what it uses.
"""
