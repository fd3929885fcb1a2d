"""``bench doctor``: what a user checks before spending GPU hours. This module: the verdict type and
the software checks (torch and CUDA, packages, the fused Mamba kernel, SAM weights);
``bench.costs.doctor_fit``: whether the data, the cache and one training step fit this machine.

Each check is ok, warn or fail, with one line of what was found and, where something is to be done,
one line saying what. "fail" is kept for what would stop or corrupt a run (a device asked for and
absent, unmet package requirements, a fused Mamba kernel that computes something else, SAM weights
that do not fit the ViT, a data folder with problems, a full disk, a training step that does not
run); "warn" for what runs but slower or not as the user may expect. The command exits 1 when any
check fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str  # what was found
    action: str = ""  # what to do about it; empty when nothing is to be done
    data: dict = field(default_factory=dict)


def environment_checks(device_asked: str) -> tuple[list[Check], str | None]:
    """torch, CUDA, the GPU and the precision runs compute in; and the device the other checks use
    (None when the one asked for is absent)."""
    import torch

    from bench.device import autocast_dtype

    checks = [Check("torch", "ok", f"torch {torch.__version__}, built for CUDA {torch.version.cuda or '-'}")]
    has_cuda = torch.cuda.is_available()
    if device_asked == "cpu":
        checks.append(Check("CUDA", "ok", "not used (--device cpu)"))
        device = "cpu"
    elif has_cuda:
        cudnn = torch.backends.cudnn.version()
        checks.append(Check("CUDA", "ok", f"{torch.cuda.device_count()} device(s) visible; cuDNN {cudnn or 'absent'}"))
        device = "cuda"
    elif device_asked == "cuda":
        checks.append(
            Check(
                "CUDA",
                "fail",
                "--device cuda was asked for but torch sees no CUDA device",
                "install a torch build for the driver's CUDA version (nvidia-smi shows it), or use --device cpu",
            )
        )
        return checks, None
    else:
        checks.append(
            Check(
                "CUDA",
                "warn",
                "no CUDA device: runs use the CPU and the smoke profile",
                "the paper profile (ViT-B, 96^3 crops, 1000 epochs) needs a CUDA GPU",
            )
        )
        device = "cpu"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        checks.append(
            Check(
                "GPU",
                "ok",
                f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability {props.major}.{props.minor}",
                data={"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)},
            )
        )
        dtype = autocast_dtype()
        if dtype == torch.bfloat16:
            checks.append(Check("precision", "ok", "bfloat16 autocast (the GPU supports bf16)"))
        else:
            checks.append(
                Check(
                    "precision",
                    "warn",
                    "no bf16 on this GPU: float16 autocast with a gradient scaler",
                    "results may differ slightly from bf16 GPUs; a step that overflows is skipped by the scaler",
                )
            )
    else:
        checks.append(Check("precision", "ok", "float32 (the CPU computes in full precision)"))
    return checks, device


def cores_check() -> Check:
    """The cores this process is given and whether other processes are using them now."""
    from bench.device import busy_warning, cores_given

    cores = cores_given()
    busy = busy_warning(cores, cores)
    if busy:
        return Check("cores", "warn", busy, "run when the machine is free, or pass --threads as suggested")
    return Check("cores", "ok", f"{cores} cores given to this process, none busy with other work")


def package_check() -> Check:
    """Every requirement the harness declares is installed at a version it accepts."""
    from importlib import metadata

    from packaging.requirements import Requirement

    from bench.provenance import installed_version

    met, problems = {}, []
    for text in metadata.requires("sam3d-bench") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # optional extras ([test], [cuda]) are checked where they matter
        version = installed_version(requirement.name)
        if version is None:
            problems.append(f"{requirement.name} is missing")
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name} {version} does not satisfy {requirement.specifier}")
        met[requirement.name] = version
    if problems:
        return Check("packages", "fail", "; ".join(problems), "reinstall from the checkout: pip install -e .", {"versions": met})
    shown = ", ".join(f"{name} {met[name]}" for name in ("torch", "monai", "timm", "fvcore", "nibabel") if name in met)
    return Check("packages", "ok", f"all {len(met)} requirements met ({shown}, ...)", data={"versions": met})


def mamba_check(device: str) -> Check:
    """mamba-ssm's fused selective scan, where it would run, against the harness's PyTorch scan."""
    from bench.provenance import installed_version
    from methods import mamba_ssm_available, scan_parity

    versions = {"mamba-ssm": installed_version("mamba-ssm"), "causal-conv1d": installed_version("causal-conv1d")}
    conv = "causal-conv1d is not used (the block's convolution runs in PyTorch)"
    if device != "cuda":
        return Check("mamba-ssm", "ok", "not used without CUDA: the PyTorch selective scan runs", data=versions)
    if versions["mamba-ssm"] is None:
        return Check(
            "mamba-ssm",
            "warn",
            "not installed: the PyTorch selective scan runs on the GPU (same results, slower)",
            "pip install -e '.[cuda]' (builds against the installed torch and CUDA)",
            versions,
        )
    if not mamba_ssm_available():
        try:
            import mamba_ssm.ops.selective_scan_interface  # noqa: F401

            reason = "unknown reason"
        except Exception as exc:  # noqa: BLE001  (the reason is what the user needs)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return Check(
            "mamba-ssm",
            "warn",
            f"mamba-ssm {versions['mamba-ssm']} is installed but its kernel does not load ({reason}): the PyTorch scan runs",
            "rebuild it for this torch and CUDA: pip install --no-build-isolation --force-reinstall --no-deps mamba-ssm",
            versions,
        )
    try:
        parity = scan_parity(device="cuda")
    except Exception as exc:  # noqa: BLE001  (a kernel built for another GPU fails at launch)
        return Check(
            "mamba-ssm",
            "fail",
            f"the fused scan failed to run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "rebuild mamba-ssm for this GPU, or uninstall it so that the PyTorch scan runs",
            versions,
        )
    errors = (
        f"relative error forward {parity['forward_error']:.1e}, gradients {parity['gradient_error']:.1e} "
        f"(tolerance {parity['tolerance']['forward']:g}, {parity['tolerance']['gradients']:g})"
    )
    data = {**versions, **parity}
    if parity["equal"]:
        detail = f"mamba-ssm {versions['mamba-ssm']}: the fused scan equals the PyTorch scan, {errors}; {conv}"
        return Check("mamba-ssm", "ok", detail, data=data)
    return Check(
        "mamba-ssm",
        "fail",
        f"mamba-ssm {versions['mamba-ssm']}: the fused scan differs from the PyTorch scan, {errors}",
        "reinstall mamba-ssm built for this torch and CUDA, or uninstall it so that the PyTorch scan runs",
        data,
    )


def sam_weights_checks(method_names: Sequence[str], checkpoint: Path | None) -> list[Check]:
    """Each pretrained backbone the methods asked for take: found, readable, and loaded into the
    paper-size network with no missing or unexpected keys (on the meta device: no memory used)."""
    from bench.errors import UserError
    from bench.plan.weights import cached_hub_weights, read_checkpoint
    from methods import get_method
    from methods.registry import build_on_meta

    first_user: dict = {}
    for name in method_names:
        spec = get_method(name).backbone
        if spec is not None and spec not in first_user:
            first_user[spec] = name
    if not first_user:
        return [Check("SAM weights", "ok", "not needed: none of the methods asked starts from pretrained weights")]
    checks = []
    for spec, method in first_user.items():
        path = Path(checkpoint).expanduser() if checkpoint is not None else cached_hub_weights(spec)
        where = "--sam-checkpoint" if checkpoint is not None else f"the Hugging Face cache ({spec.hub_repo})"
        if path is None:
            checks.append(
                Check(
                    "SAM weights",
                    "warn",
                    f"{spec.name}: no --sam-checkpoint given and not in the Hugging Face cache",
                    f"paper runs need them: pass --sam-checkpoint PATH ({spec.accepted_files}), or let a run with "
                    "network access download them once; smoke runs use a toy ViT and need none",
                )
            )
            continue
        try:
            state = read_checkpoint(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loading into meta tensors is a no-op PyTorch warns about
                build_on_meta(method, size="paper", backbone_state=state)
        except (UserError, ValueError) as exc:
            checks.append(Check("SAM weights", "fail", f"{spec.name} from {where}: {exc}", f"pass {spec.accepted_files}"))
            continue
        checks.append(
            Check(
                "SAM weights",
                "ok",
                f"{spec.name} from {where} ({path}): {len(state)} tensors, no missing or unexpected keys",
                data={"path": str(path)},
            )
        )
    return checks
