"""What a backbone costs on the machine running kdbench: latency, throughput, FLOPs, peak
memory and energy per image, with a fingerprint of the device the figures are tied to.

The ``device`` protocol (:mod:`kdbench.protocols.device`) and ``kdbench device MODEL``
(:mod:`kdbench.device.cli`) both call :func:`kdbench.device.measure.measure`.
"""
