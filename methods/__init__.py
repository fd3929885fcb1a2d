"""Segmentation methods behind one interface; importing this package registers all of them."""

from methods import masam, mednext, nnunet, nnunetv2, samed, swinunetr, tpmamba, transbts, umamba, unetr, uxnet, vnet  # noqa: F401  (registration side effects)
from methods.mamba import mamba_ssm_available, scan_parity
from methods.nnunetv2 import NNUNET_V2_FACTS, build_nnunetv2
from methods.nnunetv2 import PLANNERS as NNUNET_PLANNERS
from methods.registry import (
    CountedInput,
    MethodInfo,
    UnknownMethodError,
    count_parameters,
    create_model,
    get_method,
    list_methods,
    register_method,
)

__all__ = [
    "NNUNET_PLANNERS",
    "NNUNET_V2_FACTS",
    "CountedInput",
    "MethodInfo",
    "UnknownMethodError",
    "build_nnunetv2",
    "count_parameters",
    "create_model",
    "get_method",
    "list_methods",
    "mamba_ssm_available",
    "register_method",
    "scan_parity",
]
