"""Seeded random specs over the whole vocabulary of `refnets.spec`.

`case(seed, index)` is a pure function: case i of seed S is always the same spec,
batch and seeds, whatever else was generated before. A spec is grown one node at a
time; after each node the spec's own shape inference (`refnets.shapes.infer`) says
whether it is still valid (InputTooSmallError, a shape mismatch...), and an invalid
choice is drawn again. A whole case that cannot be completed, or whose size is over
the budget, is drawn again from a new attempt seed. No framework is imported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional, Tuple

from refnets import rules, shapes
from refnets import spec as S

from . import layers

MAX_MACS = 400_000  # per sample: keeps one case (three frameworks, two dtypes) fast
MAX_ACTIVATIONS = 20_000  # elements of the largest activation per sample
TRIES_PER_NODE = 12
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class Case:
    """One fuzz case: the spec, the batch, the weights' and the input's seeds."""

    seed: int
    index: int
    model: S.ModelSpec
    batch: int
    weight_seed: int
    input_seed: int

    @property
    def label(self) -> str:
        return f"seed {self.seed} case {self.index}"


def case(seed: int, index: int) -> Case:
    """Case `index` of `seed`: the same every time."""
    for attempt in range(MAX_ATTEMPTS):
        rng = random.Random(f"refnets-fuzz:{seed}:{index}:{attempt}")
        model = _grow(rng, f"fuzz_{seed}_{index}")
        if model is not None and within_budget(model):
            return Case(seed, index, model, batch=rng.randint(1, 3), weight_seed=rng.randrange(2 ** 31),
                        input_seed=rng.randrange(2 ** 31))
    raise RuntimeError(f"no valid spec for seed {seed} case {index} in {MAX_ATTEMPTS} attempts")


def is_valid(model: S.ModelSpec) -> bool:
    """Whether the spec's own shape inference accepts it (no framework involved)."""
    try:
        S.validate(model.root)
        shapes.infer(model)
        return True
    except ValueError:  # InputTooSmallError, a merge or a shared-layer shape mismatch, a bad name
        return False


def within_budget(model: S.ModelSpec) -> bool:
    infos = shapes.infer(model)
    biggest = max(_size(info.out_shape) for info in infos.values())
    return shapes.counts(model).macs <= MAX_MACS and biggest <= MAX_ACTIVATIONS


def _size(shape) -> int:
    out = 1
    for v in shape:
        out *= v
    return out


# ----------------------------------------------------------------------- growing


class _Grower:
    """Grows a top-level Sequential node by node, checking each addition."""

    def __init__(self, rng: random.Random, name: str):
        self.rng = rng
        self.name = name
        self.counter = 0
        self.input_shape = (rng.randint(1, 6), _size_draw(rng), _size_draw(rng))
        self.children: List[S.Node] = []

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def model(self, children=None) -> S.ModelSpec:
        root = S.Sequential(children=tuple(self.children if children is None else children))
        return S.ModelSpec(name=self.name, root=root, input_shape=self.input_shape)

    def shape(self) -> Tuple[int, ...]:
        return shapes.output_shape(self.model())

    def try_add(self, make) -> bool:
        """Draw a node with `make(shape)` until the grown spec is valid; False if none was."""
        shape = self.shape()
        for _ in range(TRIES_PER_NODE):
            node = make(shape)
            if node is not None and is_valid(self.model(self.children + [node])):
                self.children.append(node)
                return True
        return False

    def shared_targets(self, kind_of=None) -> List[str]:
        """Paths of earlier parameterised layers whose input shape is the current output shape."""
        shape = self.shape()
        infos = shapes.infer(self.model())
        return [path for path, info in infos.items()
                if rules.has_params(info.node) and info.in_shape == tuple(shape)
                and (kind_of is None or isinstance(info.node, kind_of))]


def _size_draw(rng: random.Random) -> int:
    return rng.choice((1, 2, 3, 5, 7, 8, 9, 11, 13, 16, 17))


def _grow(rng: random.Random, name: str) -> Optional[S.ModelSpec]:
    grower = _Grower(rng, name)
    for _ in range(rng.randint(1, 6)):
        if not grower.try_add(lambda shape: layers.map_node(grower, shape)):
            return None
    head = rng.choice(("map", "global", "dense", "dense"))
    if head == "global":
        grower.try_add(lambda shape: S.GlobalAvgPool(name=grower.fresh("gap"), keepdims=rng.random() < 0.3))
    elif head == "dense":
        if not grower.try_add(lambda shape: S.Flatten(name=grower.fresh("flat"))):
            return None
        for _ in range(rng.randint(1, 3)):
            if not grower.try_add(lambda shape: layers.vector_node(grower, shape)):
                return None
    model = grower.model()
    return model if is_valid(model) else None
