"""WorldConfig: what the visual-arith world draws (families, sizes, strip layout, error mix).

One dataclass, documented on its fields; ``__post_init__`` rejects settings that cannot produce a
problem and says what to change. The defaults are the layout DESIGN.md section 7 found learnable for
a tiny Qwen2-VL: one value per 28-px cell of a one-row strip, dark ink on white.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlvprm.world.problems import forms_for

FAMILIES = ("add", "mixed", "count")
ERROR_TYPES = ("none", "perception", "arithmetic")
# The shipped toy policy's teacher (measured in recipes/grpo/README.md).
DEFAULT_FLAW_RATES = {"glyph": 0.5, "dice": 0.5, "carry": 0.5, "sign": 0.5}


@dataclass
class WorldConfig:
    families: tuple[str, ...] = field(
        default=FAMILIES,
        metadata={"help": "Problem families (the `data_source` of each row) drawn uniformly: 'add' "
                  "(sum of the digits shown), 'mixed' (an expression template over the digits), "
                  "'count' (dots counted per cell, then a sum or a template)."},
    )
    num_values: tuple[int, int] = field(
        default=(3, 5),
        metadata={"help": "Inclusive range of how many values one image shows."},
    )
    arith_steps: tuple[int, int] = field(
        default=(2, 4),
        metadata={"help": "Inclusive range of arithmetic operations (steps between the reading step "
                  "and the answer step) in a reference solution."},
    )
    digit_range: tuple[int, int] = field(
        default=(1, 9),
        metadata={"help": "Inclusive range of the digits drawn by 'add' and 'mixed' (0 to 9). Zero is "
                  "left out by default: a product with 0 hides every other value."},
    )
    count_range: tuple[int, int] = field(
        default=(1, 5),
        metadata={"help": "Inclusive range of dots in one cell of a 'count' image (1 to 5)."},
    )
    num_cells: int = field(
        default=6,
        metadata={"help": "Cells in the strip; the image is cell_size x (cell_size * num_cells). Values "
                  "fill a random subset of cells in reading order; the rest stay blank."},
    )
    cell_size: int = field(
        default=28,
        metadata={"help": "Cell side in pixels. 28 = one merged Qwen2-VL vision token (patch 14, "
                  "spatial merge 2), so each value is one token."},
    )
    jitter: int = field(
        default=3,
        metadata={"help": "Largest shift in pixels of a glyph from its cell's centre (each axis)."},
    )
    glyph_height: tuple[int, int] = field(
        default=(16, 20),
        metadata={"help": "Inclusive range of a digit's height in pixels."},
    )
    error_mix: dict[str, float] = field(
        default_factory=lambda: {"none": 0.4, "perception": 0.3, "arithmetic": 0.3},
        metadata={"help": "Relative weights of the solution kinds in the VisualProcessBench-format "
                  "set: correct ('none'), one misread value ('perception'), one wrong result "
                  "('arithmetic')."},
    )
    flaw_rates: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_FLAW_RATES),
        metadata={"help": "The flawed teacher of the SFT set (rlvprm.world.teacher): the probability "
                  "that each wrong rule ('glyph', 'dice', 'carry', 'sign') is applied where it can be. "
                  "The toy policy learns these as beliefs; all 0 gives the clean reference solutions."},
    )

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        for name in ("num_values", "arith_steps", "digit_range", "count_range", "glyph_height"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} is an inclusive (low, high) range, got {(lo, hi)}")
            setattr(self, name, (int(lo), int(hi)))
        unknown = set(self.families) - set(FAMILIES)
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {self.families}")
        if self.num_values[0] < 2:
            raise ValueError("num_values must start at 2 or more: one value leaves nothing to compute")
        if self.num_cells < self.num_values[1]:
            raise ValueError(
                f"num_cells={self.num_cells} cannot hold {self.num_values[1]} values: raise num_cells "
                "or lower num_values"
            )
        if not (0 <= self.digit_range[0] and self.digit_range[1] <= 9):
            raise ValueError(f"digit_range must lie in 0..9 (one digit per cell), got {self.digit_range}")
        if not (1 <= self.count_range[0] and self.count_range[1] <= 5):
            raise ValueError(f"count_range must lie in 1..5 (dice patterns), got {self.count_range}")
        if self.cell_size < 20:
            raise ValueError(f"cell_size must be at least 20 px to hold a legible glyph, got {self.cell_size}")
        if self.glyph_height[1] + 2 * self.jitter > self.cell_size:
            raise ValueError(
                f"glyph_height up to {self.glyph_height[1]} with jitter {self.jitter} overflows a "
                f"{self.cell_size}-px cell: lower one of them"
            )
        if self.glyph_height[0] < 7:
            raise ValueError(f"glyph_height must be at least 7 px (one pixel per bitmap row), got {self.glyph_height}")
        bad = set(self.error_mix) - set(ERROR_TYPES)
        if bad or any(w < 0 for w in self.error_mix.values()) or sum(self.error_mix.values()) <= 0:
            raise ValueError(
                f"error_mix maps some of {ERROR_TYPES} to non-negative weights with a positive sum, "
                f"got {self.error_mix}"
            )
        from rlvprm.world.teacher import check_rates  # teacher -> solutions -> config

        self.flaw_rates = check_rates(self.flaw_rates)
        for family in self.families:
            if not forms_for(family, self):
                raise ValueError(
                    f"no '{family}' problem has {self.num_values} values and {self.arith_steps} "
                    "arithmetic steps: widen num_values or arith_steps"
                )
