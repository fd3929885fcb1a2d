"""What an unknown name is answered with: the closest known name, or the known names when none is
close. Shared by every registry that takes names from the command line (methods and their options,
protocols and fractions, profiles and their settings, metrics, executors, evaluation spaces);
the standard library only, so the methods and the protocols can use it too."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_hint(name: str, known: Iterable[str], listing: str) -> str:
    """``did you mean 'tpmamba'?`` for a typo of a known name, else ``listing`` followed by the
    known names (``"known methods: a, b, c"``)."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"{listing}: {', '.join(known) or 'none'}"
