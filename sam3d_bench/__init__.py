"""The contract between sam3d-bench and the methods other packages bring: import from here only.

A plugin registers its methods with :func:`register_method` when its module is imported; the
harness imports it through the entry-point group :data:`ENTRY_POINT_GROUP` of an installed
distribution, or through ``--plugin MODULE`` / ``BENCH_PLUGINS``. Everything in ``bench`` and
``methods`` that is not re-exported here may change without notice; the names below keep their
signatures (``tests/test_public_api.py`` fails when one disappears or changes). ``docs/add-a-method.md``
explains each of them with two worked examples (``bench new-method`` writes either).

Registry
    :func:`register_method` (a decorator on the builder), :class:`MethodInfo` (what the harness
    knows of a method), :class:`BackboneSpec` (pretrained weights a builder takes as
    ``backbone_state``), :class:`CountedInput`, :class:`MethodSource`,
    :class:`PluginError`; :func:`create_model`, :func:`get_method`, :func:`list_methods`,
    :func:`count_parameters` to build and inspect registered methods.

The shared frozen SAM ViT-B (every SAM adapter of the table runs on it)
    :func:`build_sam_adapted` assembles ViT + your adapters + the authors' 3D decoder, given a function
    that installs adapters into a :class:`SamSliceEncoder` (``after_block[i]`` runs after block i;
    ``context.depth`` is the volume's depth for adapters that mix slices); :data:`SAM_ADAPTER_FACTS`
    are the registration fields every SAM adapter shares (family, frozen-ViT trainable rule, patch
    multiple, backbone weights); :class:`LoRAQKV` / :func:`install_lora` are SAMed's and TP-Mamba's
    LoRA; :func:`build_sam_vit` is the ViT alone.

The authors' SAM decoder
    :class:`SliceDecoder3D` (xmed-lab/TP-Mamba's 3D decoder of the last four blocks' tokens) with
    :data:`DECODER_WIDTH` per model size; :func:`tokens_to_volume` / :func:`volume_to_tokens` convert
    ``(B*D, h, w, C)`` tokens to ``(B, C, D, h, w)`` volumes and back.

The Mamba block
    :class:`Mamba` (state-spaces/mamba's block: compiled kernels on CUDA when installed, an exact
    PyTorch scan otherwise) and :func:`mamba_ssm_available`.

Metrics (every score, table and report loops over them)
    :func:`register_metric` adds a :class:`Metric` (name, compute, title, unit, scale,
    lower-is-better, empty-mask rule); ``compute`` gets an organ's :class:`OrganMasks`. A package
    declares the module that registers through :data:`METRIC_ENTRY_POINT_GROUP`;
    :func:`metric_specs` lists every metric.

Pipelines (``register_method(..., pipeline=...)``)
    A :class:`Pipeline` opens one run from its :class:`RunContext` (profile, device, cases, label
    set, weights, configuration, run folder) and hands back a :class:`PipelineRun` that trains and
    yields a :class:`CasePrediction` per test case. A method that plans, trains and predicts by
    itself (like nnU-Net) brings a pipeline object of its own; one that trains with the harness but
    predicts its own way subclasses :class:`HarnessPipeline` (hooks ``probabilities`` and ``build``).
    The context's records: :class:`Profile`, :class:`LabelSet`, :class:`RunConfig`, :class:`Case`
    (a case's files), :class:`PreprocessedCase`, :class:`Reference` (a label file on its grid).
"""

from bench.data.btcv import Case
from bench.data.labels import LabelSet
from bench.data.settings import PreprocessedCase
from bench.evaluation.metrics import OrganMasks
from bench.evaluation.predictions import CasePrediction, Reference
from bench.evaluation.scores import Metric, metric_specs, register_metric
from bench.pipelines.context import Pipeline, PipelineRun, RunContext
from bench.pipelines.harness import HarnessPipeline
from bench.plan.profiles import Profile
from bench.runs.files import RunConfig
from methods.mamba import Mamba, mamba_ssm_available
from methods.plugins import ENTRY_POINT_GROUP, METRIC_ENTRY_POINT_GROUP, MethodSource, PluginError
from methods.registry import (
    BackboneSpec,
    CountedInput,
    Family,
    MethodInfo,
    ModelSize,
    count_parameters,
    create_model,
    get_method,
    list_methods,
    register_method,
)
from methods.sam_common import (
    SAM_ADAPTER_FACTS,
    SAM_VIT_B_WEIGHTS,
    LoRAQKV,
    SamAdapted3D,
    SamSliceEncoder,
    build_sam_adapted,
    build_sam_vit,
    install_lora,
    trainable_outside_backbone,
)
from methods.sam_decoder import DECODER_WIDTH, SliceDecoder3D, tokens_to_volume, volume_to_tokens

__all__ = [
    "DECODER_WIDTH",
    "ENTRY_POINT_GROUP",
    "METRIC_ENTRY_POINT_GROUP",
    "SAM_ADAPTER_FACTS",
    "SAM_VIT_B_WEIGHTS",
    "BackboneSpec",
    "Case",
    "CasePrediction",
    "CountedInput",
    "Family",
    "HarnessPipeline",
    "LabelSet",
    "LoRAQKV",
    "Mamba",
    "Metric",
    "MethodInfo",
    "MethodSource",
    "ModelSize",
    "OrganMasks",
    "Pipeline",
    "PipelineRun",
    "PluginError",
    "PreprocessedCase",
    "Profile",
    "Reference",
    "RunConfig",
    "RunContext",
    "SamAdapted3D",
    "SamSliceEncoder",
    "SliceDecoder3D",
    "build_sam_adapted",
    "build_sam_vit",
    "count_parameters",
    "create_model",
    "get_method",
    "install_lora",
    "list_methods",
    "mamba_ssm_available",
    "metric_specs",
    "register_method",
    "register_metric",
    "tokens_to_volume",
    "trainable_outside_backbone",
    "volume_to_tokens",
]
