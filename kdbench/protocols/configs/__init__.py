"""Typed protocol configs: one pydantic model per protocol and suite.

A protocol's ``default_config`` still writes the values; its model (declared on the protocol
as ``config_models``, one per suite) says what each key is, which values it takes and what
it means. :meth:`kdbench.protocols.base.Protocol.config` checks a run's config through the
model when the run is planned and records the model's dump, which for the defaults is the
default dict unchanged (same keys, same value types), so config hashes do not move.

- :mod:`.model`: the base model and the check that turns pydantic's errors into one line;
- :mod:`.sections`: sections several protocols share (a model spec, the base stage, LoRA);
- one module per protocol (:mod:`.fewshot`, :mod:`.distill`, ...);
- :mod:`.listing`: what ``kdbench config PROTOCOL`` prints.
"""
