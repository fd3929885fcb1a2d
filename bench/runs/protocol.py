"""A runs folder holds the runs of one protocol, written beside them as ``protocol.json`` when the
first run is planned into it: reports and ``bench status`` read the folder's draws from there (a
protocol file may since have moved), and a report never averages runs of two protocols into a row.
A folder without the file was made before protocols existed, under the default one."""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserError
from bench.io import write_json
from splits import Protocol, load_protocol, parse_protocol, protocol_json

PROTOCOL_FILE = "protocol.json"


def folder_protocol(runs_dir: Path) -> Protocol:
    path = Path(runs_dir) / PROTOCOL_FILE
    if not path.exists():
        return load_protocol()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return parse_protocol(text, str(path))


def claim_folder(runs_dir: Path, protocol: Protocol) -> None:
    """Record ``protocol`` as the folder's, or refuse when the folder holds another one."""
    runs_dir = Path(runs_dir)
    check_folder(runs_dir, protocol)
    if not (runs_dir / PROTOCOL_FILE).exists():
        runs_dir.mkdir(parents=True, exist_ok=True)
        write_json(runs_dir / PROTOCOL_FILE, protocol_json(protocol))


def check_folder(runs_dir: Path, protocol: Protocol) -> None:
    """UserError when the folder holds runs of another protocol (before anything is planned into it)."""
    runs_dir = Path(runs_dir)
    held = folder_protocol(runs_dir)
    fresh = not (runs_dir / PROTOCOL_FILE).exists() and not any(runs_dir.glob("*/*/repeat*"))
    if not fresh and (held.name, held.draws) != (protocol.name, protocol.draws):
        raise UserError(
            f"{runs_dir} holds runs of protocol {held.name}, not {protocol.name}: a runs folder holds one protocol "
            "(a report never averages two); use another --out"
        )
