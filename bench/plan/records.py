"""What a run's files record about where its numbers come from, built in one place for every run,
trained or scored from predictions made elsewhere: the stamp every table carries and the
provenance in config.json."""

from __future__ import annotations

from bench.data.btcv import Dataset
from bench.plan.profiles import Profile
from bench.plan.weights import BackboneWeights
from bench.provenance import code_revision, hardware, package_versions
from bench.runs.files import Provenance


def stamp(dataset: Dataset, profile: Profile, weights: BackboneWeights | None = None, overrides: dict | None = None) -> str:
    """One line that says what kind of numbers these are: which data, which profile and what the
    command changed in it, a CPU-sized profile, a random backbone."""
    changed = ", ".join(f"{k}={v}" for k, v in sorted((overrides or {}).items()))
    parts = [
        dataset.description,
        f"profile {profile.name}" + (f" with {changed}" if changed else ""),
    ]
    if not profile.published_size:
        parts.append(f"{profile.preprocess.spacing_mm:g} mm voxels, {profile.roi}^3 crops, small random-init networks")
    if weights is not None and weights.random:
        parts.append("SAM methods on a random backbone")
    return "; ".join(parts)


def make_provenance(
    dataset: Dataset,
    *,
    profile: str,
    device: str,
    stamp: str,
    preprocess_cache: str | None = None,
    sam_weights: str | None = None,
    overrides: dict | None = None,
) -> Provenance:
    """The provenance of a run on ``dataset``: its data, profile and device, this machine's hardware,
    the package versions and code revision, and the stamp its tables carry."""
    return Provenance(
        data_source=dataset.source,
        data_root=str(dataset.root),
        data_layout=dataset.layout,
        synthetic=dataset.synthetic,
        profile=profile,
        device=device,
        hardware=hardware(device),
        versions=package_versions(),
        code_revision=code_revision(),
        preprocess_cache=preprocess_cache,
        sam_weights=sam_weights,
        stamp=stamp,
        profile_overrides=dict(overrides) if overrides else None,
    )
