"""The nine official HRNet variants, as one table.

Stage 1 is a stack of Bottlenecks on one branch; stages 2-4 are `num_modules`
multi-resolution modules of Basic blocks with widths C, 2C, 4C, 8C.
"""
import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class StageSpec:
  num_modules: int
  num_blocks: Tuple[int, ...]   # Basic blocks per branch
  channels: Tuple[int, ...]     # width per branch


@dataclasses.dataclass(frozen=True)
class VariantSpec:
  name: str
  width: int                    # C, the width of the highest-resolution branch
  stage1_blocks: int
  stage1_planes: int            # Bottleneck planes; stage-1 output width is 4x this
  stages: Tuple[StageSpec, StageSpec, StageSpec]   # stages 2, 3, 4

  @property
  def stage1_channels(self) -> int:
    return self.stage1_planes * 4

  @property
  def final_channels(self) -> Tuple[int, ...]:
    return self.stages[-1].channels


def _spec(name, c, *, stage1_blocks, stage1_planes, modules, blocks):
  widths = (c, 2 * c, 4 * c, 8 * c)
  stages = tuple(
      StageSpec(num_modules=m, num_blocks=(blocks,) * (i + 2), channels=widths[:i + 2])
      for i, m in enumerate(modules))
  return VariantSpec(name, c, stage1_blocks, stage1_planes, stages)


VARIANTS = {
    spec.name: spec for spec in [
        _spec('hrnet_w18_small_v1', 16, stage1_blocks=1, stage1_planes=32,
              modules=(1, 1, 1), blocks=2),
        _spec('hrnet_w18_small_v2', 18, stage1_blocks=2, stage1_planes=64,
              modules=(1, 3, 2), blocks=2),
    ] + [
        _spec(f'hrnet_w{c}', c, stage1_blocks=4, stage1_planes=64, modules=(1, 4, 3),
              blocks=4)
        for c in (18, 30, 32, 40, 44, 48, 64)
    ]
}


def get_spec(name: str) -> VariantSpec:
  try:
    return VARIANTS[name]
  except KeyError:
    raise ValueError(f'unknown HRNet variant {name!r}; valid: {", ".join(VARIANTS)}') from None
