import json

import pytest

from flowmend.llm import Completion, Price, PriceTable, Request


def test_request_round_trips_through_json_and_keys_canonically():
    req = Request(messages=(("system", "be brief"), ("user", "hi")), stop=["\n"], choice=["a", "b"])
    again = Request.from_json(json.loads(json.dumps(req.to_json())))
    assert again == req and hash(again) == hash(req)
    assert again.key() == req.key()
    assert Request(prompt="hi").key() != Request(prompt="hi", max_tokens=255).key()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of prompt and messages"),
        ({"prompt": "a", "messages": (("user", "b"),)}, "exactly one"),
        ({"messages": (("robot", "b"),)}, "roles"),
        ({"prompt": "a", "choice": ("x",), "json_schema": "{}"}, "at most one"),
        ({"prompt": "a", "json_schema": "{not json"}, "not JSON"),
        ({"prompt": "a", "n": 0}, "n must"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "choice": ()}, "choice needs"),
    ],
)
def test_bad_requests_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Request(**kwargs)


def test_request_from_json_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown request field"):
        Request.from_json({"prompt": "x", "tempreature": 1})
    with pytest.raises(ValueError, match="JSON object"):
        Request.from_json(["x"])


def test_completion_round_trips():
    c = Completion(("a", "b"), 3, 4, 0.5, "m", 7.0, ("stop", "length"), 0.25)
    assert Completion.from_json(json.loads(json.dumps(c.to_json()))) == c
    assert c.text == "a" and c.tokens == 7


def test_price_table_costs_local_models_their_tokens_and_hosted_ones_their_price():
    table = PriceTable.from_json({"models": {"gpt-x": [0.5, 2.0]}})
    assert table.cost("smollm2", 10, 5) == 15  # unlisted: one unit per token
    assert table.cost("gpt-x", 10, 5) == 0.5 * 10 + 2.0 * 5
    assert PriceTable(default=Price(0, 1)).cost("anything", 100, 3) == 3
    with pytest.raises(ValueError):
        Price(-1, 0)
