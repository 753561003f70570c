"""Every operator of the built-in library passes its own examples: one parametrised test."""

import pytest

from flowmend.engine import default_library
from flowmend.engine.testing import check_case

EXAMPLES = [
    pytest.param(cls, case, id=f"{cls.name}-{i}")
    for cls in default_library().operators()
    for i, case in enumerate(cls.EXAMPLES)
]
NOT_APPLICABLE = [
    pytest.param(cls, case, id=f"{cls.name}-na{i}")
    for cls in default_library().operators()
    for i, case in enumerate(cls.NOT_APPLICABLE)
]


@pytest.mark.parametrize("cls, case", EXAMPLES)
def test_example(cls, case):
    check_case(cls, case, applicable=True)


@pytest.mark.parametrize("cls, case", NOT_APPLICABLE)
def test_not_applicable(cls, case):
    check_case(cls, case, applicable=False)


@pytest.mark.parametrize("cls", default_library().operators(), ids=lambda c: c.name)
def test_every_operator_has_a_refusal_example(cls):
    assert cls.NOT_APPLICABLE, f"{cls.name} shows no case where it does not apply"
