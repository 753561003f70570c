"""The engine's verbs: `ops`, `steps`, `apply`, `demo`, run in-process as a user would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowmend.cli import main
from flowmend.engine import PATCH_SCHEMA

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


@pytest.fixture
def seed(tmp_path) -> Path:
    path = tmp_path / "plan_then_code.py"
    shutil.copy(EXAMPLES / "plan_then_code.py", path)
    return path


def write_patch(tmp_path, data, name="patch.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def retry_params(step="code", **args):
    return {"schema": PATCH_SCHEMA, "operator": "set-call-params", "target": {"step": step},
            "args": args or {"temperature": 0.7}}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ops_json_lists_every_operator_with_its_schema(capsys):
    code, out, _ = run(capsys, "ops", "--json")
    ops = json.loads(out)
    assert code == 0 and ops
    for op in ops:
        assert {"name", "kind", "description", "args_schema"} <= set(op)
        assert op["kind"] in ("prompt", "structure")
        assert op["args_schema"]["type"] == "object"
    assert "set-call-params" in {op["name"] for op in ops}


def test_ops_doc_prints_markdown_examples(capsys):
    code, out, _ = run(capsys, "ops", "--doc")
    assert code == 0 and out.startswith("# flowmend operators") and "```python" in out


def test_ops_table(capsys):
    code, out, _ = run(capsys, "ops", "--kind", "prompt")
    assert code == 0 and "append-instruction" in out and "set-call-params" not in out
    code, out, _ = run(capsys, "ops", "--kind", "structure")
    assert code == 0 and "set-call-params" in out and "append-instruction" not in out


def test_steps_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "steps", EXAMPLES / "plan_then_code.py", "--json")
    data = json.loads(out)
    assert code == 0 and data["entry"] == "solve"
    assert [s["id"] for s in data["steps"]] == ["plan", "code"]
    for step in data["steps"]:
        assert {"id", "line", "callee", "prompt", "reads", "feeds"} <= set(step)
    assert data["steps"][0]["feeds"] == ["code"]
    assert data["steps"][1]["prompt"]["placeholders"] == ["plan"]


def test_steps_takes_entry_and_step_callee_options(capsys):
    code, out, _ = run(capsys, "steps", EXAMPLES / "class_based.py", "--step-callee",
                       "self.gen*", "--entry", "solve", "--json", "--menu")
    data = json.loads(out)
    assert code == 0 and [s["id"] for s in data["steps"]] == ["plan", "code"]
    assert data["menu"] and all(item["patch"]["schema"] == PATCH_SCHEMA for item in data["menu"])


def test_steps_table_shows_ids_and_flow(capsys):
    code, out, _ = run(capsys, "steps", EXAMPLES / "generate_then_review.py", "--menu")
    assert code == 0 and "draft" in out and "review" in out and "applicable edit" in out


def test_apply_prints_the_diff_and_writes_nothing_by_default(capsys, seed, tmp_path):
    before = seed.read_bytes()
    code, out, _ = run(capsys, "apply", seed, write_patch(tmp_path, retry_params()))
    assert code == 0
    assert out.startswith("--- a/") and "+    code = llm(" in out and "temperature=0.7" in out
    assert seed.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.json", "plan_then_code.py"]


def test_apply_writes_output_or_in_place(capsys, seed, tmp_path):
    out_path = tmp_path / "out.py"
    patches = write_patch(tmp_path, [retry_params(), retry_params("plan", max_tokens=64)])
    code, _, err = run(capsys, "apply", seed, patches, "-o", out_path)
    assert code == 0 and "wrote" in err
    text = out_path.read_text()
    assert "temperature=0.7" in text and "max_tokens=64" in text
    code, out, _ = run(capsys, "apply", seed, patches, "--in-place", "--json")
    data = json.loads(out)
    assert code == 0 and data["changed"] and data["written"] == str(seed)
    assert seed.read_text() == text


@pytest.mark.parametrize("patch,message", [
    ({**retry_params(), "operator": "no-such-op"}, "unknown-operator: no operator 'no-such-op'"),
    (retry_params("nope"), "unknown-step: set-call-params: no step 'nope'"),
    (retry_params(temperature=5), "bad-args: set-call-params: temperature must be between"),
    ({**retry_params(), "schema": "v0"}, '"schema" must be "flowmend.patch/1"'),
    ("{not json", "not JSON"),
])
def test_apply_errors_exit_2_with_one_line_and_write_nothing(capsys, seed, tmp_path, patch, message):
    before = seed.read_bytes()
    out_path = tmp_path / "out.py"
    patch_path = write_patch(tmp_path, patch)
    for extra in (["-o", out_path], ["--in-place"]):
        code, out, err = run(capsys, "apply", seed, patch_path, *extra)
        assert code == 2 and out == ""
        assert message in err and str(patch_path) in err
        assert err.strip().count("\n") == 0
        assert not out_path.exists() and seed.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.json", "plan_then_code.py"]


@pytest.mark.parametrize("source,message", [
    ("def solve(:\n", "not Python"),
    ("x = 1\n", "no entry function 'solve'"),
    ("def solve(task):\n    return task\n", "makes no step call"),
])
def test_apply_on_a_bad_workflow_names_file_and_line(capsys, tmp_path, source, message):
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    code, _, err = run(capsys, "apply", bad, write_patch(tmp_path, retry_params()), "--in-place")
    assert code == 2 and message in err and f"{bad}:" in err
    assert bad.read_text() == source


def test_missing_files_are_one_line_errors(capsys, tmp_path, seed):
    code, _, err = run(capsys, "steps", tmp_path / "none.py")
    assert code == 2 and "no such workflow file" in err
    code, _, err = run(capsys, "apply", seed, tmp_path / "none.json")
    assert code == 2 and "cannot read patch file" in err


def test_demo_shows_steps_and_a_diff(capsys):
    code, out, _ = run(capsys, "demo", "--json")
    data = json.loads(out)
    assert code == 0
    assert [s["id"] for s in data["workflow"]["steps"]] == ["plan", "code"]
    assert data["diff"].startswith("--- a/") and data["patch"]["schema"] == PATCH_SCHEMA
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "plan" in out and "+++ b/" in out


def test_crlf_workflow_keeps_its_line_ends_in_place(capsys, tmp_path):
    path = tmp_path / "crlf.py"
    path.write_bytes(b"def solve(task):\r\n    code = llm(task.prompt)\r\n    return code\r\n")
    code, _, _ = run(capsys, "apply", path, write_patch(tmp_path, retry_params()), "--in-place")
    assert code == 0
    assert path.read_bytes() == (
        b"def solve(task):\r\n    code = llm(task.prompt, temperature=0.7)\r\n    return code\r\n"
    )


AGENT_WORKFLOW = '''\
def solve(task):
    cot_instruction = "Think step by step, then solve."
    thinking, answer = cot_agent([task], cot_instruction)
    return answer
'''

AGENT_CONFIG = '''\
[[conventions]]
name = "agent"
callees = ["cot_agent"]
prompt = [1]
params = []
answer = "item:1"
'''


def test_steps_reads_the_project_config_and_flags_override_it(capsys, tmp_path):
    (tmp_path / "flowmend.toml").write_text(AGENT_CONFIG)
    workflow = tmp_path / "agent.py"
    workflow.write_text(AGENT_WORKFLOW)
    code, out, _ = run(capsys, "steps", workflow, "--json")
    data = json.loads(out)
    assert code == 0 and data["conventions"][0]["name"] == "agent"
    assert [(s["id"], s["prompt"]["variable"]) for s in data["steps"]] == [("answer", "cot_instruction")]
    code, _, err = run(capsys, "steps", workflow, "--step-callee", "llm")
    assert code == 2 and "makes no step call" in err


def test_steps_explain_names_the_config_and_the_reason_for_each_call(capsys, tmp_path):
    (tmp_path / "flowmend.toml").write_text(AGENT_CONFIG)
    workflow = tmp_path / "agent.py"
    workflow.write_text(AGENT_WORKFLOW)
    code, out, _ = run(capsys, "steps", workflow, "--explain", "--json")
    explained = json.loads(out)["explain"]
    assert code == 0 and explained["config"] == str(tmp_path / "flowmend.toml")
    assert explained["conventions_from"].startswith("the project config")
    assert explained["calls"][0]["step"] == "answer"
    assert "convention 'agent'" in explained["calls"][0]["why"]
    code, out, _ = run(capsys, "steps", workflow, "--explain")
    assert code == 0 and "step answer" in out


def test_a_bad_project_config_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "flowmend.toml").write_text(AGENT_CONFIG + "colour = 1\n")
    workflow = tmp_path / "agent.py"
    workflow.write_text(AGENT_WORKFLOW)
    code, _, err = run(capsys, "steps", workflow)
    assert code == 2 and err.count("\n") == 1 and "unknown key" in err


CLASS_ASYNC = EXAMPLES / "conventions" / "class_async"


def test_apply_of_a_sibling_prompt_edit_writes_both_files_in_place(capsys, tmp_path):
    folder = tmp_path / "class_async"
    shutil.copytree(CLASS_ASYNC, folder)
    patch = write_patch(tmp_path, {"schema": PATCH_SCHEMA, "operator": "rewrite-prompt-literal",
                                   "target": {"step": "draft"}, "args": {"text": "Draft it."}})
    workflow = folder / "class_async.py"
    before = workflow.read_text()
    code, _, err = run(capsys, "apply", workflow, patch, "-o", tmp_path / "out.py")
    assert code == 2 and "prompts.py too" in err and not (tmp_path / "out.py").exists()
    code, out, _ = run(capsys, "apply", workflow, patch, "--in-place", "--json")
    data = json.loads(out)
    assert code == 0 and data["files"] == [str(folder / "prompts.py")]
    assert workflow.read_text() == before
    prompts = (folder / "prompts.py").read_text()
    assert 'DRAFT_PROMPT = "Draft it."' in prompts and "# Asked first: a complete draft." in prompts
    code, out, _ = run(capsys, "steps", workflow, "--json")
    assert json.loads(out)["steps"][0]["prompt"]["text"] == "Draft it."


@pytest.mark.parametrize("importing, message", [
    ("from . import missing as p\n", "prompt module missing.py not found beside the workflow"),
    ("import broken as p\n", "prompt module broken.py is not Python"),
])
def test_a_sibling_prompt_module_that_cannot_be_read_is_a_one_line_error(capsys, tmp_path,
                                                                          importing, message):
    (tmp_path / "broken.py").write_text("X = (\n")
    workflow = tmp_path / "w.py"
    workflow.write_text(importing + "\ndef solve(task):\n    return llm(p.PROMPT)\n")
    code, _, err = run(capsys, "steps", workflow)
    assert code == 2 and message in err and err.count("\n") == 1
    assert f"{workflow}:4" in err


def test_project_config_models_and_options_fill_only_what_the_command_line_left(tmp_path):
    import argparse

    from flowmend.cli._common import add_model_options, add_workflow_options, project_config

    (tmp_path / "pyproject.toml").write_text(
        '[tool.flowmend]\nentry = "run"\nmodels = {program = "gemma3-270m"}\n'
        'options = {model_seed = 7, backend = "replay"}\n')
    workflow = tmp_path / "w.py"
    parser = argparse.ArgumentParser()
    add_workflow_options(parser)
    add_model_options(parser)
    args = parser.parse_args(["--backend", "openai"])
    config = project_config(args, workflow)
    assert config.entry == "run" and args.model == "gemma3-270m" and args.model_seed == 7
    assert args.backend == "openai"  # given on the command line: the flag wins
