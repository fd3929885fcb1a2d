"""Protocols: which cases each run trains on and is tested on, as committed data.

A protocol is a JSON file: per data fraction (``100pct``, ``25pct``, ...), a list of draws, each a
``{"train": [...], "test": [...]}`` pair of case ids. The built-in ones live in ``protocols/`` and are
made by ``make_splits.py`` (a test checks that the committed files equal its output):

- ``tpmamba`` (the default): the TP-Mamba paper's. Test 0035-0040 for every draw; 100 % trains on
  the other 24, and five seeded draws of 25 % and 12 % of them.
- ``cv5``: nnU-Net's five folds over the 30 labelled cases, nnU-Net's own assignment; fold k is
  draw k of every fraction, tested on its six held-out cases (each labelled case is tested once).
- ``synapse8``: TransUNet's Synapse split (18 training, 12 test cases), scored on its 8 organs.

``bench run --protocol NAME|FILE`` selects one; its name is in every run's configuration.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_PROTOCOL = "tpmamba"


class ProtocolError(ValueError):
    """A protocol that cannot be used: unknown name, unreadable file, malformed draws, a fraction it
    lacks. The CLI prints it as one line, exit code 2."""


@dataclass(frozen=True)
class Draw:
    train: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str  # one line: what the protocol is, printed under every table
    draws: dict[str, tuple[Draw, ...]]  # fraction -> draws
    seed: int
    # The paper's Table 1 was measured under this protocol: reports set their rows beside it.
    compare_with_paper: bool = False
    source: str = ""  # "built-in" or the file it was read from
    # The organs scored and tabled, in this order (e.g. Synapse's 8); empty: every organ of the dataset.
    organs: tuple[str, ...] = ()

    @property
    def fractions(self) -> tuple[str, ...]:
        return tuple(self.draws)

    @property
    def caption(self) -> str:
        """What every table says about the protocol it was made under."""
        return f"protocol {self.name}: {self.description}"

    def cases_per_draw(self, fraction: str) -> int:
        return len(self.draws[fraction][0].train)

    def percent(self, fraction: str) -> str:
        """``25pct`` -> ``25%``."""
        return fraction.removesuffix("pct") + "%"

    def fraction_title(self, fraction: str) -> str:
        """``25% (6 cases)``; the first fraction reads ``100% of the training data (24 cases)``."""
        of = " of the training data" if fraction == self.fractions[0] else ""
        return f"{self.percent(fraction)}{of} ({self.cases_per_draw(fraction)} cases)"

    @property
    def fixed_test(self) -> bool:
        """Every draw of every fraction is tested on the same cases."""
        return len({draw.test for draws in self.draws.values() for draw in draws}) == 1

    def test_ids(self) -> tuple[str, ...]:
        """Every case some draw is tested on."""
        return tuple(sorted({case for draws in self.draws.values() for draw in draws for case in draw.test}))

    def all_ids(self) -> tuple[str, ...]:
        ids = set(self.test_ids())
        for draws in self.draws.values():
            for draw in draws:
                ids.update(draw.train)
        return tuple(sorted(ids))

    def check_fraction(self, fraction: str) -> tuple[Draw, ...]:
        if fraction not in self.draws:
            # A fraction is its number: '50pct' is not a typo of '25pct', '25pt' is.
            same = [f for f in self.fractions if re.sub(r"\D", "", f) == re.sub(r"\D", "", fraction)]
            hint = f"did you mean {same[0]!r}?" if len(same) == 1 else f"choose one of {', '.join(self.fractions)}"
            raise ProtocolError(f"protocol {self.name} has no data fraction {fraction!r}; {hint}")
        return self.draws[fraction]


def built_in_protocols() -> tuple[str, ...]:
    folder = resources.files(__name__).joinpath("protocols")
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


@functools.cache
def load_protocol(spec: str = DEFAULT_PROTOCOL) -> Protocol:
    """A built-in protocol by name, or a protocol file by path (read once per process)."""
    if spec in built_in_protocols():
        text, source = resources.files(__name__).joinpath("protocols", f"{spec}.json").read_text(), "built-in"
    elif Path(spec).is_file():
        try:
            text, source = Path(spec).read_text(), str(Path(spec).resolve())
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"cannot read protocol file {spec}: {exc}") from None
    else:
        # As bench.names answers an unknown name; this package imports none of the harness.
        close = difflib.get_close_matches(str(spec), built_in_protocols(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"built-in: {', '.join(built_in_protocols())}"
        raise ProtocolError(f"unknown protocol {spec!r}; {hint} (or the path of a protocol file)")
    return parse_protocol(text, source)


def parse_protocol(text: str, source: str) -> Protocol:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"protocol {source} is not JSON: {exc}") from None
    where = f"protocol {source}"
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("name"), str)
        or not isinstance(raw.get("fractions"), dict)
        or not raw["fractions"]
    ):
        raise ProtocolError(f"{where} needs a name and a non-empty 'fractions' object")
    draws: dict[str, tuple[Draw, ...]] = {}
    for fraction, entries in raw["fractions"].items():
        if not isinstance(entries, list) or not entries:
            raise ProtocolError(f"{where}: fraction {fraction} has no draws")
        parsed = []
        for k, entry in enumerate(entries):
            ok = isinstance(entry, dict) and all(
                isinstance(entry.get(part), list) and entry[part] and all(isinstance(c, str) for c in entry[part])
                for part in ("train", "test")
            )
            if not ok:
                raise ProtocolError(f"{where}: draw {k} of {fraction} needs non-empty 'train' and 'test' lists of case ids")
            if overlap := sorted(set(entry["train"]) & set(entry["test"])):
                raise ProtocolError(f"{where}: draw {k} of {fraction} trains and tests on {', '.join(overlap)}")
            parsed.append(Draw(tuple(entry["train"]), tuple(entry["test"])))
        draws[fraction] = tuple(parsed)
    return Protocol(
        name=raw["name"],
        description=str(raw.get("description", raw["name"])),
        draws=draws,
        seed=int(raw.get("seed", 0)),
        compare_with_paper=bool(raw.get("compare_with_paper", False)),
        source=source,
        organs=_organs(raw.get("organs", []), where),
    )


def _organs(organs, where: str) -> tuple[str, ...]:
    if not isinstance(organs, list) or not all(isinstance(o, str) and o for o in organs) or len(set(organs)) != len(organs):
        raise ProtocolError(f"{where}: 'organs' must be a list of distinct organ names")
    return tuple(organs)


def protocol_json(protocol: Protocol) -> dict:
    """What a protocol file holds (``parse_protocol`` reads it back to an equal protocol)."""
    return {
        "name": protocol.name,
        "description": protocol.description,
        "seed": protocol.seed,
        "compare_with_paper": protocol.compare_with_paper,
        **({"organs": list(protocol.organs)} if protocol.organs else {}),
        "fractions": {f: [{"train": list(d.train), "test": list(d.test)} for d in draws] for f, draws in protocol.draws.items()},
    }


# The data fractions of the default protocol, largest first (the built-in protocols share them).
FRACTIONS = load_protocol().fractions
