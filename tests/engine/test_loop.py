"""The inner loop on the replay backend: exact, model-free, on the real sandbox.

Two kinds of recordings feed it: hand-written ones (this file builds the exact requests the
runtime sends, so the outcome is known in advance) and sessions recorded from the embedded
model by `flowmend repair --record` (tests/engine/data/replay_*.jsonl; re-record them with the
commands in tests/engine/data/README.md when the loop's prompts change).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowmend.engine import Budget, RepairConfig, parse_workflow, repair
from flowmend.engine._loop import MODES
from flowmend.engine._runtime import Meter, RunContext, run_workflow
from flowmend.engine import default_library, load_library
from flowmend.llm import Backend, Broker, Completion, ModelConfig, Request, open_backend
from flowmend.sandbox import Sandbox
from flowmend.task import Task
from flowmend.verifier import ScoreWeights
from tests.llm.recordings import one_answer_per_request

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"
ADD = Task.from_json(json.loads((DATA / "add_task.json").read_text()))
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2) as sb:
        yield sb


def write_replay(path: Path, answers: list[tuple[Request, list[str]]]) -> Path:
    """A replay file answering each request with the given texts (in order, per request)."""
    with path.open("w") as out:
        for request, texts in answers:
            for text in texts:
                completion = Completion(
                    texts=(text,) * request.n, prompt_tokens=len(request.prompt) // 4,
                    completion_tokens=len(text) // 4 * request.n, latency_s=0.01,
                    model="smollm2", cost=float(len(request.prompt) // 4 + len(text) // 4 * request.n),
                )
                out.write(json.dumps({"schema": "flowmend.replay/1", "key": request.key(),
                                      "request": request.to_json(),
                                      "completion": completion.to_json()}) + "\n")
    return path


def broker_for(path: Path) -> Broker:
    return Broker(open_backend(ModelConfig(kind="replay", replay_path=str(path))))


def single_shot_request(task: Task) -> Request:
    return Request(
        prompt="Complete the following Python function. Reply with the whole function in one "
        f"```python block.\n\n{task.prompt}",
        temperature=0.0, max_tokens=512,
    )


def test_stops_on_pass_without_asking_the_optimizer(tmp_path, sandbox):
    broker = broker_for(write_replay(tmp_path / "r.jsonl", [(single_shot_request(ADD), [RIGHT])]))
    seed = (EXAMPLES / "single_shot.py").read_text()
    result = repair(seed, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                    config=RepairConfig(iterations=3), trace_path=tmp_path / "trace.jsonl")
    assert result.status == "solved" and result.stopped_by == "visible_checks"
    assert result.passed_visible and result.iterations == 0 and result.calls == 1
    assert result.diff == "" and "return a + b" in result.output
    events = [json.loads(line)["event"] for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert events == ["start", "llm", "verdict", "stop"]


def test_failing_seed_exhausts_iterations_and_keeps_the_incumbent(tmp_path, sandbox):
    # The optimizer's request is not recorded: each iteration's proposals fail as a model
    # fault would, are logged, and the loop goes on to its iteration limit without raising.
    broker = broker_for(write_replay(tmp_path / "r.jsonl", [(single_shot_request(ADD), [WRONG])]))
    seed = (EXAMPLES / "single_shot.py").read_text()
    result = repair(seed, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                    config=RepairConfig(iterations=2), trace_path=tmp_path / "trace.jsonl")
    assert result.status == "iterations_exhausted" and result.stopped_by == "iterations"
    assert not result.passed_visible and result.iterations == 2
    assert result.final_source == seed and result.proposals.applied == 0
    assert result.feedback.failed == 2
    errors = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert sum(1 for e in errors if e["event"] == "llm" and "ReplayMiss" in str(e.get("error"))) == 2


def test_seed_errors_are_results_not_exceptions(tmp_path, sandbox):
    broker = broker_for(write_replay(tmp_path / "r.jsonl", []))
    result = repair("def solve(task:\n", ADD, program=broker, optimizer=broker, sandbox=sandbox)
    assert result.status == "error" and result.stopped_by == "error"
    assert "not Python" in result.error and result.calls == 0


def test_calls_budget_is_never_exceeded(tmp_path, sandbox):
    # The seed asks twice; a budget of one call refuses the second inside the sandbox.
    plan_then_code = (EXAMPLES / "plan_then_code.py").read_text()
    plan = Request(prompt=f"Plan: {ADD.prompt}", max_tokens=384)
    code = Request(prompt="Write code based on plan:\n1. add them", max_tokens=384)
    broker = broker_for(write_replay(tmp_path / "r.jsonl", [(plan, ["1. add them"]), (code, [RIGHT])]))
    result = repair(plan_then_code, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                    config=RepairConfig(iterations=3, budget=Budget(calls=1)))
    assert result.calls == 1 and result.status == "budget_exhausted"
    assert result.stopped_by == "calls" and not result.passed_visible
    # With two calls the same seed solves the task.
    result = repair(plan_then_code, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                    config=RepairConfig(iterations=3, budget=Budget(calls=2)))
    assert result.status == "solved" and result.calls == 2


@pytest.mark.parametrize("name,callees", [
    ("async_plan_then_code.py", ("llm",)),
    ("class_based.py", ("self.generate",)),
])
def test_async_and_class_based_workflows_run_with_steps_traced(tmp_path, sandbox, name, callees):
    source = (EXAMPLES / name).read_text()
    wf = parse_workflow(source, step_callees=callees)
    # Whatever the prompts are, answer with the right code: record by capturing the requests.
    seen: list[Request] = []

    class Capture(Broker):
        def call(self, request, timeout=None):
            seen.append(request)
            return Completion((RIGHT,), 10, 10, 0.0, "smollm2", 20.0)

    backend = open_backend(ModelConfig(kind="replay", replay_path=str(write_replay(tmp_path / "e.jsonl", []))))
    ctx = RunContext(workflow=wf, task=ADD, program=Capture(backend), sandbox=sandbox,
                     meter=Meter(Budget()))
    run = run_workflow(ctx, timeout_s=20)
    assert run.status == "ok", (run.error_type, run.error_message, run.traceback_tail)
    assert "return a + b" in run.output
    assert [c.step for c in run.calls] == [s.id for s in wf.steps]
    assert all(ADD.prompt.strip() in r.prompt for r in seen[:1])


@pytest.mark.parametrize("name", ["agent_tuples", "dict_answer"])
def test_convention_fixtures_run_and_an_inserted_verify_step_runs_too(tmp_path, sandbox, name):
    from flowmend.engine import Applied, Patch, apply_patch, find_project_config

    path = EXAMPLES / "conventions" / name / f"{name}.py"
    config = find_project_config(path)
    wf = parse_workflow(path.read_text(), conventions=config.conventions, path=str(path))

    class Right(Broker):
        def call(self, request, timeout=None):
            return Completion((RIGHT,), 10, 10, 0.0, "smollm2", 20.0)

    backend = open_backend(ModelConfig(kind="replay", replay_path=str(write_replay(tmp_path / "e.jsonl", []))))
    code_step = wf.steps[-1].id
    edited = apply_patch(wf, Patch("insert-verify-step", {"step": code_step}, {}))
    assert isinstance(edited, Applied)
    for workflow in (wf, edited.workflow):
        ctx = RunContext(workflow=workflow, task=ADD, program=Right(backend), sandbox=sandbox,
                         meter=Meter(Budget()))
        run = run_workflow(ctx, timeout_s=20)
        assert run.status == "ok", (run.error_type, run.error_message, run.traceback_tail)
        assert "return a + b" in run.output
        assert len(run.calls) == len(wf.steps)  # the right code passes: no repair call
    # The model calls inside the workflow's own agent helpers are traced to the steps calling them.
    assert [c.step for c in run.calls] == [s.id for s in wf.steps]


def test_a_workflow_with_its_prompts_in_a_sibling_module_runs_and_runs_its_edited_prompt(
        tmp_path, sandbox):
    """`import prompts` beside the workflow: the sandbox gets the module (and an edit's new
    text of it), so the class-based fixture runs as written and after a prompt rewrite."""
    import shutil

    from flowmend.engine import Applied, Patch, apply_patch, find_project_config

    folder = tmp_path / "class_async"
    shutil.copytree(EXAMPLES / "conventions" / "class_async", folder)
    path = folder / "class_async.py"
    config = find_project_config(path)
    wf = parse_workflow(path.read_text(), entry=config.entry, conventions=config.conventions,
                        path=str(path))
    seen: list[str] = []

    class Right(Broker):
        def call(self, request, timeout=None):
            seen.append(request.prompt)
            return Completion((RIGHT,), 10, 10, 0.0, "smollm2", 20.0)

    backend = open_backend(ModelConfig(kind="replay", replay_path=str(write_replay(tmp_path / "e.jsonl", []))))
    edited = apply_patch(wf, Patch("rewrite-prompt-literal", {"step": "draft"},
                                   {"text": "Draft the function, code only."}))
    assert isinstance(edited, Applied) and edited.files  # the edit rewrote prompts.py
    for workflow, draft in ((wf, "Write a complete, correct Python solution."),
                            (edited.workflow, "Draft the function, code only.")):
        seen.clear()
        ctx = RunContext(workflow=workflow, task=ADD, program=Right(backend), sandbox=sandbox,
                         meter=Meter(Budget()))
        run = run_workflow(ctx, timeout_s=20)
        assert run.status == "ok", (run.error_type, run.error_message, run.traceback_tail)
        assert "return a + b" in run.output
        assert seen[0].startswith(draft)
        assert [c.step for c in run.calls] == ["draft", "solution"]
    assert path.read_text() == (EXAMPLES / "conventions" / "class_async" / "class_async.py"
                                ).read_text()  # nothing on disk changed


def test_prompt_mode_menu_holds_prompt_edits_only():
    wf = parse_workflow((EXAMPLES / "plan_then_code.py").read_text())
    from flowmend.engine import menu

    items = menu(wf, kinds=MODES["prompt"])
    assert items and all(default_library().get(i.patch.operator).kind == "prompt" for i in items)


RECORDED = [
    ("replay_add.jsonl", "single_shot.py", str(DATA / "add_task.json"),
     dict(iterations=2, proposals=2)),
    ("replay_he0.jsonl", "plan_then_code.py", "humaneval/HumanEval/0",
     dict(iterations=2, proposals=3, program_params={"max_tokens": 200})),
    ("replay_prompt.jsonl", "plan_then_code.py", "humaneval/HumanEval/0",
     dict(iterations=2, proposals=3, mode="prompt", program_params={"max_tokens": 200})),
]


def replay_recorded(sandbox, tmp_path, replay, workflow, task, options, *, reuse_greedy,
                    first_answers=False):
    from flowmend.bench.datasets import task_by_id

    path = DATA / replay
    if not path.exists():
        pytest.fail(f"missing recording {path}: see tests/engine/data/README.md")
    tmp_path.mkdir(parents=True, exist_ok=True)
    if first_answers:
        path = one_answer_per_request(path, tmp_path / replay)
    if task.endswith(".json"):
        the_task = Task.from_json(json.loads(Path(task).read_text()))
    else:
        the_task = task_by_id(task)
    config = RepairConfig(budget=Budget(calls=40, tokens=30_000, wall_s=900),
                          reuse_greedy=reuse_greedy, **options)
    seed = (EXAMPLES / workflow).read_text()
    broker = broker_for(path)
    result = repair(seed, the_task, program=broker, optimizer=broker, sandbox=sandbox,
                    config=config, trace_path=tmp_path / "trace.jsonl")
    return config, result, json.loads((DATA / replay).with_suffix(".result.json").read_text())


@pytest.mark.parametrize("replay,workflow,task,options", RECORDED)
def test_recorded_sessions_replay_exactly(tmp_path, sandbox, replay, workflow, task, options):
    # Recorded without reuse: every call of the recording is made again.
    config, result, expected = replay_recorded(sandbox, tmp_path, replay, workflow, task, options,
                                               reuse_greedy=False)
    assert result.reused_calls == 0
    # Token counts are not compared with the recording: vLLM on CPU may answer the same greedy
    # request with different texts in different batches, and which of a key's recordings a
    # concurrent candidate gets back is a race. The decisions and counts are exact, except
    # `no_code`, left out for the same reason: it depends on the texts.
    got = result.to_json()
    got["proposals"].pop("no_code")
    expected["proposals"].pop("no_code", None)
    for key in ("status", "passed_visible", "iterations", "calls", "stopped_by", "proposals"):
        assert got[key] == expected[key], key
    assert result.tokens <= config.budget.tokens and result.calls <= config.budget.calls
    p = result.proposals
    assert p.tried == p.applied + p.invalid + p.not_applicable + p.rejected + p.duplicate
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    answered = [e for e in trace if e["event"] == "llm" and "prompt_tokens" in e]
    assert sum(e["prompt_tokens"] + e["completion_tokens"] for e in answered) == result.tokens
    if options.get("mode") == "prompt":
        kinds = {default_library().get(c.patch.operator).kind for c in result.candidates if c.patch}
        assert kinds <= {"prompt"}


# The session that iterates and edits a step whose answer others reuse (the first one's seed
# passes at once; the prompt-mode one's recorded edits all rewrite the plan, which the code
# step reads, so nothing there is reusable).
@pytest.mark.parametrize("replay,workflow,task,options", RECORDED[1:2])
def test_reusing_greedy_answers_spends_less_for_the_same_decisions(tmp_path, sandbox, replay,
                                                                    workflow, task, options):
    _, plain, _ = replay_recorded(sandbox, tmp_path / "plain", replay, workflow, task, options,
                                  reuse_greedy=False, first_answers=True)
    _, result, _ = replay_recorded(sandbox, tmp_path / "reuse", replay, workflow, task, options,
                                   reuse_greedy=True, first_answers=True)
    for key in ("status", "passed_visible", "iterations", "stopped_by", "proposals"):
        assert result.to_json()[key] == plain.to_json()[key], key
    assert [(c.key, c.source, c.selected, c.passed_visible) for c in result.candidates] == \
        [(c.key, c.source, c.selected, c.passed_visible) for c in plain.candidates]
    # Every call of the plain run was either made again or reused; a reused one was not sent.
    assert result.calls + result.reused_calls == plain.calls
    assert sum(c.reused for c in result.candidates) == result.reused_calls
    assert sum(c.calls for c in result.candidates) + result.reused_calls == \
        sum(c.calls for c in plain.candidates)
    assert result.reused_calls > 0, "nothing reused: the recording no longer shows reuse"
    assert result.tokens < plain.tokens and result.reused_tokens > 0
    # The trace books reused calls at 0 tokens, so its sum is what the repair spent.
    trace = [json.loads(line) for line in (tmp_path / "reuse" / "trace.jsonl").read_text()
             .splitlines()]
    reused = [e for e in trace if e["event"] == "llm" and e.get("reused")]
    assert len(reused) == result.reused_calls
    assert all(e["prompt_tokens"] == e["completion_tokens"] == 0 for e in reused)
    answered = [e for e in trace if e["event"] == "llm" and "prompt_tokens" in e]
    assert sum(e["prompt_tokens"] + e["completion_tokens"] for e in answered) == result.tokens


def test_lineage_names_each_parent_and_its_patch_rebuilds_the_child(sandbox):
    """Every proposal names the incumbent it was made from; applying its Patch to that
    parent's source gives its own source, so nobody needs to re-derive lineage."""
    from flowmend.bench.datasets import task_by_id
    from flowmend.engine import Patch, apply_patch

    broker = broker_for(DATA / "replay_he0.jsonl")
    config = RepairConfig(iterations=2, proposals=3, program_params={"max_tokens": 200},
                          budget=Budget(calls=40, tokens=30_000, wall_s=900))
    seed = (EXAMPLES / "plan_then_code.py").read_text()
    result = repair(seed, task_by_id("humaneval/HumanEval/0"), program=broker,
                    optimizer=broker, sandbox=sandbox, config=config)
    proposals = [c for c in result.candidates if c.index]
    assert result.candidates[0].key == (0, 0) and result.candidates[0].parent is None
    assert proposals
    incumbent = (0, 0)
    for k in sorted({c.iteration for c in proposals}):
        for c in (c for c in proposals if c.iteration == k):
            parent = result.candidate(c.parent)
            assert c.parent == incumbent and isinstance(c.patch, Patch)
            applied = apply_patch(parse_workflow(parent.source), c.patch)
            assert applied.source == c.source
        incumbent = next((c.key for c in proposals if c.iteration == k and c.selected), incumbent)
    data = result.to_json()["candidates"]
    assert json.loads(json.dumps(data)) == data and data[1]["parent"] == list(proposals[0].parent)


VERIFYING = '''def solve(task):
    code = llm("Write " + task.prompt)
    verify(code)
    return code
'''


def test_a_workflow_checking_its_own_answer_runs_the_checks_once(tmp_path, sandbox):
    request = Request(prompt="Write " + ADD.prompt, max_tokens=384)
    broker = broker_for(write_replay(tmp_path / "r.jsonl", [(request, [RIGHT])]))
    events = []
    result = repair(VERIFYING, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                    config=RepairConfig(iterations=0), trace_path=tmp_path / "trace.jsonl",
                    on_event=events.append)
    assert result.status == "solved", result.error
    # verify(code) inside the run and the feedback on the output are one check.
    assert result.checks_cached == 1
    from flowmend.engine import LlmEvent, StartEvent, TraceEvent, VerdictEvent

    assert all(isinstance(e, TraceEvent) for e in events)
    assert isinstance(events[0], StartEvent) and events[0].config_digest == RepairConfig(iterations=0).digest
    assert [type(e) for e in events[1:3]] == [LlmEvent, VerdictEvent]
    lines = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert lines == [e.to_json() for e in events]
    assert lines[2]["event"] == "verdict" and lines[2]["passed"] == 2


def test_repair_config_is_one_json_record_with_a_digest():
    from flowmend.engine import OptimizerConfig, Patch

    config = RepairConfig(
        iterations=2, mode="prompt", budget=Budget(calls=9, tokens=None), rng_seed=7,
        weights=ScoreWeights(beta=0.25), step_callees=("self.generate",),
        pre_patches=(Patch("append-instruction", {"step": "code"}, {"sentence": "Be brief."}),),
        program_params={"max_tokens": 200, "stop": ["\n\n"]},
        optimizer=OptimizerConfig(menu_size=6, text_template="{instruction}"),
        reuse_greedy=False,
    )
    data = json.loads(json.dumps(config.to_json()))
    again = RepairConfig.from_json(data)
    assert again == config and again.digest == config.digest and len(config.digest) == 64
    assert RepairConfig.from_json({}) == RepairConfig()
    assert RepairConfig(rng_seed=1).digest != RepairConfig().digest
    assert RepairConfig(reuse_greedy=False).digest != RepairConfig().digest


def test_repair_config_carries_conventions_and_keeps_old_digests():
    from flowmend.engine import Convention

    agent = Convention(name="agent", callees=("agent",), prompt=("#1",), answer="item:1")
    config = RepairConfig(conventions=(agent,))
    again = RepairConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config and again.digest == config.digest != RepairConfig().digest
    assert "conventions" not in RepairConfig().to_json()  # set-ups made before keep their digest


@pytest.mark.parametrize("data, field", [
    ({"iterations": "2"}, "iterations"),
    ({"conventions": [{"name": "x", "colour": 1}]}, "'conventions'"),
    ({"budget": {"calls": -1}}, "'budget'"),
    ({"budget": {"callz": 1}}, "'budget'"),
    ({"weights": {"alpha": -1}}, "'weights'"),
    ({"optimizer": {"choice_template": "{task}"}}, "'optimizer'"),
    ({"pre_patches": [{"operator": "x"}]}, "'pre_patches'"),
    ({"step_callees": "llm"}, "'step_callees'"),
    ({"seeds": 1}, "'seeds'"),
    ({"rng_seed": 1.5}, "rng_seed"),
    ({"reuse_greedy": "yes"}, "reuse_greedy"),
])
def test_repair_config_from_json_names_the_bad_field_in_one_line(data, field):
    with pytest.raises(ValueError, match=field) as err:
        RepairConfig.from_json(data)
    assert "\n" not in str(err.value)


def test_a_slow_model_does_not_count_against_the_run_timeout_but_workflow_time_does(sandbox):
    """The engine's llm handler waits inside `model_wait()`: two 1.5 s model calls fit a 1 s
    run timeout, while the workflow's own 3 s of sleep does not."""
    import time as _time

    source = ("def solve(task):\n"
              "    plan = llm('plan')\n"
              "    return llm('code: ' + plan)\n")

    class Slow(Broker):
        def call(self, request, timeout=None):
            _time.sleep(1.5)
            return Completion((RIGHT,), 10, 10, 1.5, "smollm2", 20.0)

    backend = open_backend(ModelConfig(kind="replay", replay_path=str(DATA / "replay_add.jsonl")))
    slow = RunContext(workflow=parse_workflow(source), task=ADD, program=Slow(backend),
                      sandbox=sandbox, meter=Meter(Budget()))
    run = run_workflow(slow, timeout_s=1.0)
    assert run.status == "ok", (run.status, run.error_type, run.error_message)
    assert len(run.calls) == 2 and run.wall_s >= 3.0
    sleepy = RunContext(workflow=parse_workflow("import time\ndef solve(task):\n"
                                                "    time.sleep(3)\n    return llm('x')\n"),
                        task=ADD, program=Slow(backend), sandbox=sandbox, meter=Meter(Budget()))
    assert run_workflow(sleepy, timeout_s=1.0).status == "timeout"


class _Scripted(Backend):
    """Every prompt is 10 tokens (counted before the call as reported after it); a completion
    is 10 tokens per sample, cut to max_tokens. The task's prompt gets WRONG, any other prompt
    (a repair) RIGHT; a menu choice is answered with its first option."""

    name = "scripted"
    model = "smollm2"
    exact_prompt_tokens = True

    def count_prompt_tokens(self, request):
        return 10

    def generate(self, requests):
        out = []
        for r in requests:
            if r.choice is not None:
                text = r.choice[0]
            else:
                text = WRONG if r.prompt.startswith("Complete the following") else RIGHT
            out.append(Completion((text,) * r.n, 10, min(10, r.max_tokens) * r.n, 0.0,
                                  self.model, float(10 + min(10, r.max_tokens) * r.n)))
        return out


def test_a_proposal_cut_by_the_budget_keeps_its_output_and_is_counted_as_budget_cut(sandbox):
    # Seed: 20 tokens. The optimizer's choice: 10 + 4 (its max_tokens). The candidate (insert-verify-step on
    # `code`): its code call, 20; its check fails, and its repair call (a 10-token prompt) no
    # longer fits the 64 tokens: the workflow catches BudgetExhausted and returns the
    # unrepaired code, which is scored.
    seed = (EXAMPLES / "single_shot.py").read_text()
    library = load_library(("flowmend.operators.insert_verify_step",))
    with Broker(_Scripted()) as broker:
        result = repair(seed, ADD, program=broker, optimizer=broker, sandbox=sandbox,
                        config=RepairConfig(iterations=1, proposals=1, library=library,
                                            budget=Budget(calls=None, tokens=64, wall_s=None)))
    assert result.status == "budget_exhausted" and result.stopped_by == "tokens"
    assert result.tokens == 54 and result.proposals.applied == 1
    assert (result.proposals.budget_cut, result.proposals.no_code) == (1, 0)
    cut = result.candidate((1, 1))
    assert cut.budget_stop == "tokens" and cut.run_status == "ok"
    assert "return a - b" in cut.output and cut.feedback.kind == "failing_check"
    assert cut.score == result.candidate((0, 0)).score
    data = result.to_json()
    assert data["proposals"]["budget_cut"] == 1 and data["candidates"][1]["budget_stop"] == "tokens"
