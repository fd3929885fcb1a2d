"""Pretrained backbone weights (a method's ``BackboneSpec``): read by the harness, handed to the builders.

Methods never read files; the harness reads a checkpoint (``weights_only=True``: a checkpoint is
data, never code), or fetches the hosted copy the method's spec names, or, where the user allows it,
lets the backbone stay random and stamps every output ``random backbone``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.errors import UserError
from bench.io import sha256_file

if TYPE_CHECKING:
    from methods.registry import BackboneSpec


@dataclass(frozen=True)
class BackboneWeights:
    state: dict[str, torch.Tensor] | None  # the tensors, once read; None for a random backbone or a job's handed copy
    description: str
    identity: str  # enters the config hash
    path: Path | None = None  # the file they are read from; None for a random backbone

    @property
    def random(self) -> bool:
        return self.state is None and self.path is None

    def portable(self) -> BackboneWeights:
        """What a job on another process or node is handed: the file and its identity, not the
        tensors (hundreds of MB pickled per job); :meth:`tensors` reads them there."""
        return replace(self, state=None)

    def tensors(self) -> dict[str, torch.Tensor] | None:
        """The state dict (read from the file where a job was handed only its name); None if random."""
        if self.state is None and self.path is not None:
            return read_checkpoint(self.path)
        return self.state


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt (torch, weights only) or .safetensors file; UserError if unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"SAM checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files and pickles with code raise many types
        raise UserError(f"cannot read SAM checkpoint {path} ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"SAM checkpoint {path} holds no state dict of tensors")
    return state


def resolve_backbone_weights(spec: BackboneSpec, checkpoint: Path | None, published_size: bool, allow_random: bool) -> BackboneWeights:
    """The weights for ``spec``: the user's checkpoint, else the hosted copy, else (if allowed) none.
    ``published_size``: the profile builds SAM's ViT-B (``Profile.published_size``), not a toy ViT."""
    if checkpoint is not None:
        if not published_size:
            raise UserError("--sam-checkpoint needs the paper-size ViT-B: add --profile paper (the smoke profile uses a toy ViT)")
        state = read_checkpoint(checkpoint)
        digest = sha256_file(Path(checkpoint).expanduser())
        path = Path(checkpoint).expanduser().resolve()
        return BackboneWeights(state, f"{spec.name} from {checkpoint} (sha256 {digest[:12]})", f"sha256:{digest}", path)
    if not published_size:
        return BackboneWeights(None, "random backbone (smoke profile: toy ViT with SAM's structure)", "random-smoke")
    try:
        path = hub_weights_file(spec)
        state = read_checkpoint(path)
        return BackboneWeights(state, f"{spec.name} (Hugging Face {spec.hub_repo}, {path})", f"hub:{spec.hub_repo}", Path(path))
    except (OSError, UserError) as exc:  # offline, not cached, hub errors, unreadable download
        if allow_random:
            return BackboneWeights(None, "random backbone (--allow-random-backbone)", "random")
        how = f"pass --sam-checkpoint PATH ({spec.accepted_files}), or --allow-random-backbone to run on random weights"
        raise UserError(f"no {spec.name} weights could be loaded ({type(exc).__name__}: {exc}); {how}") from None


def hub_weights_file(spec: BackboneSpec) -> Path:
    """The hosted copy of a backbone: from the local Hugging Face cache, else downloaded.

    A 3-second reachability probe comes first, so that an offline machine fails at once instead of
    waiting out the hub client's retries.
    """
    import socket

    from huggingface_hub import hf_hub_download

    cached = cached_hub_weights(spec)
    if cached is not None:
        return cached
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as exc:
        raise OSError(f"huggingface.co unreachable and {spec.hub_repo} not in the local cache") from exc
    return Path(hf_hub_download(spec.hub_repo, spec.hub_file))


def cached_hub_weights(spec: BackboneSpec) -> Path | None:
    """The hosted copy of a backbone if the local Hugging Face cache holds it; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec.hub_repo, spec.hub_file)
    return Path(cached) if isinstance(cached, str) else None
