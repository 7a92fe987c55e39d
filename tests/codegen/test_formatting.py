"""Every generated module — each zoo model and each node type of the vocabulary, in
each framework — is `ruff format` and `ruff check` clean with the project's settings
for generated code (`[tool.ruff]` in pyproject.toml). Generation is text: no
framework is needed."""

import pytest

import refnets
from codegen_helpers import PYPROJECT, VOCABULARY, ruff, ruff_problems
from refnets.codegen import generate


@pytest.mark.skipif(not ruff(), reason="ruff is not installed")
@pytest.mark.parametrize("framework", ["torch", "keras", "mxnet"])
def test_generated_sources_are_formatted_and_lint_clean(framework, tmp_path):
    specs = [refnets.get_spec(n) for n in refnets.list_models()] + list(VOCABULARY.values())
    for spec in specs:
        (tmp_path / f"gen_{spec.name}.py").write_text(generate(spec, framework))
    assert ruff_problems(str(tmp_path), PYPROJECT) == ""
