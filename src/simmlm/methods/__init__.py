"""Methods: plain ``nn.Module`` classes sharing ``forward(inputs, mask) -> ModelOutput``, each registering itself (with
its builder, training defaults and engine hooks) in :mod:`simmlm.methods.registry` when its file is imported."""

from simmlm.methods.base import ExpertMixture, ModelOutput, outputs_for_subsets, validate_inputs, zero_fill
from simmlm.methods.dmome import DMoME, build_dmome
from simmlm.methods.dream import DREAM, build_dream
from simmlm.methods.late_fusion import LateFusion, build_late_fusion
from simmlm.methods.mmp import MMP, build_mmp
from simmlm.methods.registry import MethodEntry, create_method, get_method, list_methods, register_method
from simmlm.nn.experts import expert_options_for

__all__ = [
    "DMoME",
    "DREAM",
    "ExpertMixture",
    "LateFusion",
    "MMP",
    "MethodEntry",
    "ModelOutput",
    "build_dmome",
    "build_dream",
    "build_late_fusion",
    "build_mmp",
    "create_method",
    "expert_options_for",
    "get_method",
    "list_methods",
    "outputs_for_subsets",
    "register_method",
    "validate_inputs",
    "zero_fill",
]
