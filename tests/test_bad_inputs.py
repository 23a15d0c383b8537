"""Every case of benchmarks/bad_inputs.py, the tables in benchmarks/results/reliability.md: a command's
exit code, a one-line message with the expected words, no model loaded before a refusal that needs none,
nothing left behind where nothing may be and nothing deleted that must stay; a request's HTTP status and
message in OpenAI's error shape, and valid requests unharmed by a bad one sent with them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bad_inputs.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bad_inputs", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bad_inputs = _benchmark()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    return bad_inputs.build_workspace(tmp_path_factory.mktemp("bad-inputs"))


def test_the_table_covers_at_least_the_inputs_the_issue_lists() -> None:
    assert len(bad_inputs.CASES) >= 25
    assert len({case.name for case in bad_inputs.CASES}) == len(bad_inputs.CASES)


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=lambda case: case.name)
def test_each_bad_input_gets_its_answer(workspace, case, tmp_path: Path) -> None:
    outcome = bad_inputs.run_case(case, workspace, tmp_path)
    assert outcome.code == case.code, outcome.message
    assert case.expect in outcome.message
    assert "Traceback" not in outcome.message
    if case.code != 0:
        assert len(outcome.message.splitlines()) == 1, "one line, no traceback"
    if case.code == 2:
        assert outcome.message.startswith(f"llara-rag {case.argv[0]}: ")
    if case.before_model:
        assert not outcome.model_loaded, "refused only after a model loaded"
    assert not outcome.leftover, f"{case.leaves_nothing} was created"
    assert not outcome.lost, f"{case.keeps} was deleted"


@pytest.fixture(scope="module")
def apps(workspace):
    return bad_inputs.serve_workspace(workspace)


@pytest.mark.parametrize("case", bad_inputs.HTTP_CASES, ids=lambda case: case.name)
def test_each_bad_request_gets_its_answer(apps, case) -> None:
    outcome = bad_inputs.run_http_case(case, apps)
    assert outcome.status == case.status, outcome.message
    assert case.expect in outcome.message
    assert outcome.openai_shape


def test_a_bad_request_fails_alone(apps) -> None:
    outcome, valid = bad_inputs.run_concurrent_case(apps)
    assert outcome.status == 400 and outcome.openai_shape
    assert valid == [200] * bad_inputs.CONCURRENT_VALID
