"""Eager execution of a model our Keras backend built, node by node over its spec.

Keras's own eager call of a functional model keeps every intermediate tensor
until the call returns, and a second `keras.Model` with every node's tensor as
an output keeps them all by design. This walks the spec as `build._emit` did and
calls the very same layer objects that `_emit` recorded per node
(`Bindings.steps`) on eager NHWC tensors, so Python drops each intermediate
tensor as soon as nothing needs it: the input of a node is handed over in a
one-element list that the callee empties, rather than held by the caller's
frame while the callee runs. Each node's output is shown to `visit(path,
tensor)` in the spec's execution order (`spec.walk`: a container after its
children), once per path.

Knows nothing of how a node becomes layers (build.py does): it only replays the
recorded chains.
"""

from __future__ import annotations

from typing import Callable, List

from ... import spec as S
from .build import Bindings, merge_input

Visit = Callable[[str, object], None]


def run(bindings: Bindings, batch, train: bool, visit: Visit):
    """The model's output for the NHWC `batch` (an eager tensor), every layer
    called with `training=train`; `visit(path, tensor)` sees every node's output
    as it is computed. The model's moving statistics change as in any
    training-mode call: restoring them is the caller's business."""
    return _Walk(bindings, train, visit).node(bindings.spec.root, "", [batch])


class _Walk:
    def __init__(self, bindings: Bindings, train: bool, visit: Visit):
        self.steps, self.train, self.visit = bindings.steps, train, visit

    def node(self, node: S.Node, path: str, held: List):
        """The output of `node` on the tensor in `held` (which this empties)."""
        if isinstance(node, S.Sequential):
            x = held.pop()
            for index, child in enumerate(node.children):
                box = [x]
                del x
                x = self.node(child, S.join(path, S.child_segment(child, index)), box)
        elif isinstance(node, S.Parallel):
            x = self._parallel(node, path, held)
        else:
            x = held.pop()
            for layer in self.steps[path]:
                x = layer(x, training=self.train)
        self.visit(path, x)
        return x

    def _parallel(self, node: S.Parallel, path: str, held: List):
        """Every branch on the same input (the last one takes it over), then the merge."""
        last = len(node.branches) - 1
        outs = [self.node(branch, S.join(path, S.child_segment(branch, i)), held if i == last else [held[0]])
                for i, branch in enumerate(node.branches)]
        (merge,) = self.steps[path]
        return merge(merge_input(outs), training=self.train)
