"""What made a result: package versions, code revision, hardware."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "sam3d-bench",
    "torch",
    "monai",
    "timm",
    "numpy",
    "scipy",  # the p-values and the surface distances
    "pandas",  # the tables and the statistics they feed
    "nibabel",
    "surface-distance",
    "fvcore",
    "nnunetv2",
)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        versions[name] = installed_version(name) or "not installed"
    return versions


def code_revision() -> str | None:
    """git commit of the harness source (with '+dirty' if modified), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device: str) -> dict[str, str]:
    import torch

    from bench.device import cores_given, device_name

    info = {
        "platform": platform.platform(),
        "cpu": device_name("cpu"),
        "torch_threads": str(torch.get_num_threads()),
        "cores_given": str(cores_given()),
    }
    if device == "cuda":
        info["gpu"] = device_name("cuda")
    return info
