"""The paper's video models: C2D / I3D ResNet-50/101 with non-local blocks (docs/paper.md section 3)."""
from nlbench.models.pretrained import LoadReport, inflate_weight, load_pretrained
from nlbench.models.resnet import Bottleneck, VideoResNet
from nlbench.models.spec import STAGES, BlockSpec, NonLocalKnobs, StageSpec, VideoResNetSpec
from nlbench.models.zoo import ARCHS, DEPTHS, NL_PRESETS, VARIANTS, WIDTHS, ModelConfig, build_model, make_config

__all__ = [
    "ARCHS", "BlockSpec", "Bottleneck", "DEPTHS", "LoadReport", "ModelConfig", "NL_PRESETS", "NonLocalKnobs",
    "STAGES", "StageSpec", "VARIANTS", "VideoResNet", "VideoResNetSpec", "WIDTHS", "build_model",
    "inflate_weight", "load_pretrained", "make_config",
]
