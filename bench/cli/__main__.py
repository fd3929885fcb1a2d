"""``python -m bench.cli``: the ``bench`` command (torchrun starts it this way)."""

from bench.cli.app import main

main()
