"""The ``bench`` command (Typer): one module per group of commands; each parses its options,
checks them, calls a stage and prints. User errors are one line and exit code 2."""
