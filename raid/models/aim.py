"""AIM v1 with its attention-probe head, the RAID feature extractor: the public names.

The parts live in small modules: `aim_config` (sizes and their YAML), `aim_net` (the
PyTorch modules and builders), `aim_checkpoint` (weights files: load, save, digest).
Import from here: `from raid.models.aim import load_config, load_aim`.
"""

from __future__ import annotations

from raid.models.aim_checkpoint import checkpoint_digest, load_aim, save_official_checkpoint
from raid.models.aim_config import NAMED_SIZES, AimConfig, load_config
from raid.models.aim_net import AimModel, build_aim, random_aim, sincos_pos_embed

__all__ = [
    "AimConfig",
    "AimModel",
    "NAMED_SIZES",
    "build_aim",
    "checkpoint_digest",
    "load_aim",
    "load_config",
    "random_aim",
    "save_official_checkpoint",
    "sincos_pos_embed",
]
