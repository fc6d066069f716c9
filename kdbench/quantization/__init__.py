"""Precision as an evaluation axis of the student: which precisions exist
(:mod:`~kdbench.quantization.precisions`), the seeded calibration subset
(:mod:`~kdbench.quantization.calibration`), static post-training quantisation through
torchao's PT2E flow (:mod:`~kdbench.quantization.ptq`), what a quantised model weighs and
holds in activations (:mod:`~kdbench.quantization.footprint`), fake-quantisation during
training for QAT-style methods (:mod:`~kdbench.quantization.training`) and the record
figures a scoring protocol adds (:mod:`~kdbench.quantization.scoring`)."""
