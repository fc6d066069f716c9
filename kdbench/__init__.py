"""kdbench: a benchmark suite and leaderboard for knowledge distillation from vision
foundation models.

The public entry points are the command line (``kdbench --help``) and the modules it
calls: :mod:`kdbench.runner` (run protocol x method x seed units), :mod:`kdbench.results`
(result records), :mod:`kdbench.plugins` (the plugin manager and registry).
"""

__version__ = "0.1.0"
