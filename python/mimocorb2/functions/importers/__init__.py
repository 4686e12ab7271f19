"""Prebuilt hardware importers: ``importers.redpitaya.waveform``, ``importers.picoscope.source``.

Use them in a setup with ``function: importers.<module>.<name>`` and no ``file``. Each module
also has ``validate_config(config, sink_dtype, data_length) -> list[str]``, which checks a
worker's configuration without touching the hardware (an empty list means it is valid); the
worker functions run the same check when they start.

- :mod:`~mimocorb2.functions.importers.redpitaya`: RedPitaya STEMlab 125-14 over TCP, either
  the MCPHA-style waveform server (port 1001, binary, the default) or the stock SCPI server
  (port 5000).
- :mod:`~mimocorb2.functions.importers.picoscope`: PicoScope 3000A-series oscilloscopes in rapid
  block mode through Pico's ``picosdk`` wrapper (an optional dependency).
"""
