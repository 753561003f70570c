import json

from flowmend.cli import main


def test_models_list_json_names_the_embedded_models(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["kind"] for r in rows} == {"smollm2": "chat", "gemma3-270m": "base"}
    assert all(r["installed"] for r in rows)


def test_models_without_action_prints_the_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2" in out and "gemma3-270m" in out and "hub id" in out


def test_prepare_an_unknown_model_is_one_line_and_exit_2(capsys):
    assert main(["models", "prepare", "llama-70b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "llama-70b" in err and "\n" not in err


def test_prepare_a_ready_model_does_nothing(capsys, monkeypatch, tmp_path):
    # A ready folder (manifest present) is reported, never rebuilt.
    from flowmend.llm import _store

    monkeypatch.setenv("FLOWMEND_CACHE", str(tmp_path))
    folder = _store.model_dir("smollm2")
    folder.mkdir(parents=True)
    (folder / _store.MANIFEST).write_text(json.dumps({"converter": _store.CONVERTER_VERSION}))
    assert main(["models", "prepare", "smollm2"]) == 0
    assert "ready in" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == [_store.MANIFEST]


def test_bench_rejects_bad_numbers(capsys):
    assert main(["models", "bench", "--max-tokens", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
