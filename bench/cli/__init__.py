"""The ``bench`` command line (Typer): one module per group of commands, put together in
``__main__``; each parses its options, checks them, calls a stage and prints. User errors are one
line and exit code 2."""

import warnings

# timm's hrnet module declares a torch.jit.interface at import, which torch >= 2.10 marks as
# deprecated: a line on every command about code the harness never runs.
warnings.filterwarnings("ignore", message="`torch.jit.interface` is deprecated", category=FutureWarning)
