"""One interface for every method: a registry of builders with their metadata.

A method module registers a builder with :func:`register_method`; the harness only ever calls
:func:`create_model` and reads :class:`MethodInfo`. Builders take
``(in_channels, out_channels, roi_size, **hyperparameters)`` (plus ``size``, "paper" or "smoke", for a
builder that names it: the profile's model size, never a user option) and return an ``nn.Module`` mapping
``(B, in_channels, X, Y, Z)`` to logits ``(B, out_channels, X, Y, Z)``. Hyperparameters come from
the method's ``paper`` settings, overlaid by its ``smoke`` settings for the CPU-sized profile,
overlaid by explicit overrides (ablations are overrides, never copies of a method).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

import torch
from torch import nn

from bench.names import unknown_hint
from methods.plugins import BUILT_IN, MethodSource, PluginError, load_plugins, source_of

Family = Literal["sam-adapter", "3d-net", "own pipeline"]
ModelSize = Literal["paper", "smoke"]
PUBLISHED_SIZE: ModelSize = "paper"  # the methods as published; "smoke" narrows them for a CPU
Builder = Callable[..., nn.Module]
TrainableRule = Callable[[nn.Module], Iterable[str]]


@dataclass(frozen=True)
class BackboneSpec:
    """Pretrained weights a method's builder takes as ``backbone_state`` (a state dict: methods never
    read files). The harness reads them from ``--sam-checkpoint`` or the hub copy named here."""

    name: str  # what the weights are, in every output that says which weights a run used
    hub_repo: str  # Hugging Face repository of the hosted copy
    hub_file: str  # file in that repository
    accepted_files: str  # what a user may pass instead, for error messages


@dataclass(frozen=True)
class CountedInput:
    """Where a method's parameters and MACs are counted: the common cube, or the patch its own
    pipeline plans (``roi_size``, z y x) with the builder options that describe it and what it is."""

    roi_size: tuple[int, int, int]
    options: Mapping[str, Any] = field(default_factory=dict)
    what: str = ""  # empty for the common cube

    @property
    def label(self) -> str:
        size = tuple(self.roi_size)
        return f"{size[0]}^3" if len(set(size)) == 1 else "x".join(map(str, size))


class UnknownMethodError(KeyError):
    """A method name the registry does not know; the CLI prints it as one line, exit code 2."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class MethodInfo:
    """What the harness may know about a method."""

    name: str
    family: Family
    reference: str
    builder: Builder
    paper: Mapping[str, Any] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    # Names of the parameters that train; None means all of them (3D nets trained from scratch).
    trainable: TrainableRule | None = None
    # Every spatial size of the input must be a multiple of this (patching, pooling depth).
    size_multiple: int = 1
    # Name of the hyperparameter holding the only crop size the network accepts (None: any size).
    required_crop: str | None = None
    weights: str = "random init (trained from scratch)"
    # The pretrained weights the builder takes, None for networks trained from scratch.
    backbone: BackboneSpec | None = None
    # How the uniform framework departs from the original recipe (deep supervision, schedules...).
    notes: str = ""
    # Raised whenever the network or its initialisation changes what it computes; part of every run's
    # configuration, so a run trained by an earlier revision is never taken for a current one.
    revision: int = 1
    # A method that brings its own pipeline (planning, preprocessing, training, inference; or the
    # harness's training with its own prediction) gives the pipeline object here (the Pipeline protocol
    # of bench.pipelines.context); the harness then drives it on the run's cases instead of its own. An
    # own pipeline's builder gives the network it would plan for a patch of the crop's size (counts).
    pipeline: Any = None
    # What a row of this method is, where the name alone could mislead (reports show it beside the name).
    title: str = ""
    # Where bench list and bench flops count it, when that is not the cube every other method gets.
    counted_input: CountedInput | None = None
    # Built in, or the plugin module and distribution that registered it (set by register_method).
    source: MethodSource = BUILT_IN
    # A baseline the report matches every other method against at similar measured memory (nnU-Net
    # Revisited's compute-matched comparison): nnU-Net v2 and its ResEnc presets.
    compute_reference: bool = False

    def hyperparameters(self, size: ModelSize = "paper", **overrides: Any) -> dict[str, Any]:
        params = dict(self.paper)
        if size == "smoke":
            params.update(self.smoke)
        params.update(overrides)
        return params


_REGISTRY: dict[str, MethodInfo] = {}


FAMILIES: tuple[Family, ...] = get_args(Family)


def register_method(
    name: str,
    *,
    family: Family | None = None,
    reference: str | None = None,
    paper: Mapping[str, Any] | None = None,
    smoke: Mapping[str, Any] | None = None,
    trainable: TrainableRule | None = None,
    size_multiple: int = 1,
    required_crop: str | None = None,
    weights: str = "random init (trained from scratch)",
    backbone: BackboneSpec | None = None,
    notes: str = "",
    revision: int = 1,
    pipeline: Any = None,
    title: str = "",
    counted_input: CountedInput | None = None,
    compute_reference: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (like timm's ``register_model``).

    ``family`` and ``reference`` are required. A missing or mistyped field, or a name another method
    holds, raises ``PluginError`` naming the method and where both come from."""

    def decorate(builder: Builder) -> Builder:
        source = source_of(getattr(builder, "__module__", "") or "")
        where = f"method {name!r} from {source.describe()}"
        if name in _REGISTRY:
            raise PluginError(f"{where} clashes with the {_REGISTRY[name].source.describe()} method {name!r}; rename one")
        problems = [
            *([] if isinstance(name, str) and name.isidentifier() else ["its name must be a Python identifier"]),
            *([] if family in FAMILIES else [f"family must be one of {', '.join(FAMILIES)}, got {family!r}"]),
            *(
                []
                if isinstance(reference, str) and reference.strip()
                else ["reference (the paper or repository it reproduces) is required"]
            ),
            *([] if callable(builder) else ["the builder is not callable"]),
            *([] if trainable is None or callable(trainable) else ["trainable must be a function of the model or None"]),
            *([] if isinstance(revision, int) and revision >= 1 else [f"revision must be a whole number from 1, got {revision!r}"]),
            *(
                []
                if isinstance(size_multiple, int) and size_multiple >= 1
                else [f"size_multiple must be a whole number from 1, got {size_multiple!r}"]
            ),
            *pipeline_problems(pipeline),
        ]
        if problems:
            raise PluginError(f"{where} cannot be registered: {'; '.join(problems)}")
        _REGISTRY[name] = MethodInfo(
            name=name,
            family=family,
            reference=reference,
            builder=builder,
            paper=MappingProxyType(dict(paper or {})),
            smoke=MappingProxyType(dict(smoke or {})),
            trainable=trainable,
            size_multiple=size_multiple,
            required_crop=required_crop,
            weights=weights,
            backbone=backbone,
            notes=notes,
            revision=revision,
            pipeline=pipeline,
            title=title,
            counted_input=counted_input,
            source=source,
            compute_reference=bool(compute_reference),
        )
        return builder

    return decorate


def pipeline_problems(pipeline: Any) -> list[str]:
    """What keeps ``pipeline`` from being a pipeline the harness can drive (the Pipeline protocol
    of bench.pipelines.context: ``eval_spaces``, ``needs_preprocessed(profile)``, ``open(context, console)``)."""
    if pipeline is None:
        return []
    spaces = getattr(pipeline, "eval_spaces", None)
    problems = [
        f"pipeline lacks a callable {name}" for name in ("open", "needs_preprocessed") if not callable(getattr(pipeline, name, None))
    ]
    if not (isinstance(spaces, tuple) and spaces and all(isinstance(space, str) for space in spaces)):
        problems.append(f"pipeline.eval_spaces must be a non-empty tuple of evaluation spaces, got {spaces!r}")
    if isinstance(pipeline, (str, type)):
        problems = [f"pipeline must be a pipeline object (an instance), got {pipeline!r}"]
    return problems


def list_methods() -> list[MethodInfo]:
    """The built-in methods by name, then the plugins' in the order they registered."""
    load_plugins()
    return sorted(_REGISTRY.values(), key=lambda info: (not info.source.builtin, info.name if info.source.builtin else ""))


def get_method(name: str) -> MethodInfo:
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; {unknown_hint(name, sorted(_REGISTRY), 'known methods')}") from None


def build_on_meta(name: str, *, size: ModelSize = "paper", roi_size: tuple[int, int, int] = (96, 96, 96), **overrides: Any) -> nn.Module:
    """The method's network without allocating or initialising its weights (PyTorch's meta device):
    for counting parameters and checking that the builder accepts options, in milliseconds.

    A builder that reads tensor values while it builds (MONAI's SwinUNETR turns its drop-path rates
    into floats) cannot run on the meta device; it is built on the CPU instead.
    """
    try:
        with torch.device("meta"):
            return create_model(name, size=size, roi_size=roi_size, **overrides)
    except NotImplementedError:
        pass
    except RuntimeError as exc:
        if "meta" not in str(exc):
            raise
    return create_model(name, size=size, roi_size=roi_size, **overrides)


def check_input_size(info: MethodInfo, roi_size: tuple[int, int, int], size: ModelSize = "paper", **overrides: Any) -> None:
    """ValueError naming the method and the sizes it accepts when roi_size is not one of them."""
    bad = [s for s in roi_size if s % info.size_multiple]
    if bad:
        raise ValueError(f"method {info.name!r} needs every crop size to be a multiple of {info.size_multiple}; got {tuple(roi_size)}")
    if info.required_crop is not None:
        crop = info.hyperparameters(size, **overrides).get(info.required_crop)
        if crop is not None and tuple(roi_size) != (crop,) * 3:
            raise ValueError(
                f"method {info.name!r} is defined for {crop}^3 crops only; this run's crop is {tuple(roi_size)}: use --roi {crop}"
            )


def counted_at(info: MethodInfo, cube: int) -> CountedInput:
    """Where the method's parameters and MACs are counted: the cube every method gets, unless it
    plans its own patch."""
    return info.counted_input or CountedInput((cube,) * 3)


def create_model(
    name: str,
    *,
    size: ModelSize = "paper",
    in_channels: int = 1,
    out_channels: int = 14,
    roi_size: tuple[int, int, int] = (96, 96, 96),
    **overrides: Any,
) -> nn.Module:
    """Build a registered method with its trainable-parameter rule applied (frozen parts get no grad)."""
    info = get_method(name)
    check_input_size(info, roi_size, size, **overrides)
    hyper = info.hyperparameters(size, **overrides)
    if "size" in inspect.signature(info.builder).parameters:  # builders whose networks differ by profile ask for it
        hyper["size"] = size
    model = info.builder(in_channels, out_channels, tuple(roi_size), **hyper)
    if info.trainable is not None:
        keep = set(info.trainable(model))
        for pname, param in model.named_parameters():
            param.requires_grad_(pname in keep)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
