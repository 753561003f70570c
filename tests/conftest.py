"""Session-wide test configuration: Hypothesis profiles (fast in CI, long under `flowmend fuzz`)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# The real embedded model, loaded once per test session and shared by every test marked
# `model` (loading takes ~30 s on two cores). Tests open their own `Broker` on it.
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_backend():
    """The vLLM engine serving the embedded default model (smollm2), shared by the session."""
    from flowmend.llm import ModelConfig, open_backend

    backend = open_backend(ModelConfig(kind="vllm", model="smollm2", seed=0, kv_cache_gib=1.0))
    yield backend
    backend.close()
