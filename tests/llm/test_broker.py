import asyncio
import threading
import time

import pytest

from flowmend.llm import Broker, BrokerClosed, Price, PriceTable, RecordingBackend, Request

from .backends import EchoBackend


def _run_threads(count, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)


def test_attached_workflows_blocked_on_a_call_make_one_batch():
    backend = EchoBackend()
    results = {}
    # A long idle window: only "everyone attached is waiting" can release the batch early.
    with Broker(backend, max_wait_s=5.0, max_delay_s=10.0) as broker:
        start = threading.Barrier(32)

        def workflow(i):
            with broker.attach():
                start.wait()
                results[i] = broker.call(Request(prompt=f"task {i}"))

        _run_threads(32, workflow)
        stats = broker.stats()
    assert [len(b) for b in backend.batches] == [32]
    assert stats.batches == 1 and stats.requests == 32 and stats.batch_sizes == (32,)
    # Every caller got the answer to its own request.
    assert all(results[i].text == f"task {i}"[::-1] for i in range(32))


def test_unattached_callers_are_batched_by_the_idle_window():
    backend = EchoBackend(delay_s=0.05)
    with Broker(backend, max_wait_s=0.2) as broker:
        results = {}

        def caller(i):
            results[i] = broker.call(Request(prompt=f"q{i} " * (i + 1)))

        _run_threads(40, caller)
        stats = broker.stats()
    assert stats.requests == 40 and stats.batches <= 3
    assert all(results[i].text == (f"q{i} " * (i + 1))[::-1] for i in range(40))
    assert backend.threads == {"flowmend-broker"}  # only the collector touches the backend


def test_requests_arriving_while_the_engine_is_busy_go_out_together():
    backend = EchoBackend(delay_s=0.3)
    with Broker(backend, max_wait_s=0.01) as broker:
        first = broker.submit(Request(prompt="first"))
        while not backend.batches:  # the engine is now busy with "first"
            pass
        later = [broker.submit(Request(prompt=f"later {i}")) for i in range(20)]
        assert first.result().text == "tsrif"
        assert [f.result().text for f in later] == [f"later {i}"[::-1] for i in range(20)]
    assert [len(b) for b in backend.batches] == [1, 20]
    assert all(f.result().queue_s > 0.1 for f in later)


def test_max_batch_splits_large_bursts():
    backend = EchoBackend()
    with Broker(backend, max_batch=8, max_wait_s=0.2) as broker:
        answers = broker.generate([Request(prompt=str(i)) for i in range(20)])
    assert [a.text for a in answers] == [str(i)[::-1] for i in range(20)]
    assert [len(b) for b in backend.batches] == [8, 8, 4]


def test_a_backend_exception_reaches_every_waiting_caller_and_the_broker_survives():
    backend = EchoBackend(fail_on="boom")
    with Broker(backend, max_wait_s=0.2) as broker:
        futures = [broker.submit(Request(prompt=p)) for p in ("a", "boom", "c")]
        for future in futures:
            with pytest.raises(RuntimeError, match="engine failed on 'boom'"):
                future.result(timeout=10)
        assert broker.call(Request(prompt="after"), timeout=10).text == "retfa"
        stats = broker.stats()
    assert stats.failed_batches == 1 and stats.batches == 2 and stats.requests == 1


def test_a_request_the_backend_cannot_serve_fails_alone_at_submit():
    with Broker(EchoBackend()) as broker:
        with pytest.raises(ValueError, match="serves 'echo-1'"):
            broker.submit(Request(prompt="x", model="other"))
        with pytest.raises(TypeError):
            broker.submit("just a string")
        assert broker.call(Request(prompt="ok", model="echo-1")).text == "ko"


def test_stats_sum_tokens_cost_and_busy_time():
    backend = EchoBackend(delay_s=0.05, prices=PriceTable(default=Price(0.5, 2.0)))
    with Broker(backend) as broker:
        answers = broker.generate([Request(prompt="one two three", n=2), Request(prompt="four")])
        stats = broker.stats()
    assert stats.prompt_tokens == 3 + 1
    assert stats.completion_tokens == sum(a.completion_tokens for a in answers) == 3 * 2 + 1
    assert stats.cost == pytest.approx(sum(a.cost for a in answers))
    assert answers[0].cost == pytest.approx(0.5 * 3 + 2.0 * 6)
    assert stats.busy_s >= 0.05 and stats.throughput == pytest.approx(7 / stats.busy_s)


def test_asyncio_callers_share_a_batch():
    backend = EchoBackend()

    async def main(broker):
        return await asyncio.gather(*(broker.acall(Request(prompt=f"a{i}")) for i in range(10)))

    with Broker(backend, max_wait_s=0.2) as broker:
        answers = asyncio.run(main(broker))
    assert [a.text for a in answers] == [f"a{i}"[::-1] for i in range(10)]
    assert [len(b) for b in backend.batches] == [10]


def test_serve_json_answers_the_sandbox_rpc_payload():
    with Broker(EchoBackend()) as broker:
        answer = broker.serve_json({"prompt": "abc", "max_tokens": 8})
        assert answer["texts"] == ["cba"] and answer["model"] == "echo-1"
        with pytest.raises(ValueError, match="unknown request field"):
            broker.serve_json({"prompt": "abc", "bogus": 1})


def test_close_answers_pending_requests_then_refuses_new_ones():
    broker = Broker(EchoBackend(delay_s=0.1), max_wait_s=1.0)
    pending = [broker.submit(Request(prompt=f"p{i}")) for i in range(5)]
    broker.close()
    assert [f.result(timeout=5).text for f in pending] == [f"p{i}"[::-1] for i in range(5)]
    with pytest.raises(BrokerClosed):
        broker.submit(Request(prompt="late"))


class _SlowOnLong(EchoBackend):
    """A concurrent backend (like vLLM's engine loop): "long" prompts take a second to answer."""

    concurrent = True

    def generate(self, requests):
        answers = super().generate(requests)  # records the batch at once
        if any("long" in r.prompt for r in requests):
            time.sleep(1.0)
        return answers


@pytest.mark.parametrize("recorded", [False, True])
def test_a_concurrent_backend_answers_a_later_short_batch_before_an_earlier_long_one(
        recorded, tmp_path):
    backend = _SlowOnLong()
    # Recording a concurrent backend (`--record`) keeps it concurrent.
    sent_to = RecordingBackend(backend, tmp_path / "rec.jsonl") if recorded else backend
    with Broker(sent_to, max_wait_s=0.01) as broker:
        started = time.monotonic()
        long = broker.submit(Request(prompt="long"))
        while not backend.batches:  # the long batch is under way
            time.sleep(0.001)
        short = broker.call(Request(prompt="short"))
        short_at = time.monotonic() - started
        assert not long.done() and short.text == "trohs"
        assert long.result().text == "gnol"
        stats = broker.stats()
    assert short_at < 0.9  # it did not wait behind the long batch
    assert [len(b) for b in backend.batches] == [1, 1] and len(backend.threads) >= 1
    # Busy time is the union of the overlapping calls, not their sum.
    assert 1.0 <= stats.busy_s < 1.5


def test_attached_workflows_with_a_request_in_flight_do_not_hold_back_the_others():
    # Two workflows attached to a concurrent backend: one waits on a long call; the other's
    # request must go out at once, not after the idle window.
    backend = _SlowOnLong()
    with Broker(backend, max_wait_s=5.0, max_delay_s=10.0) as broker:
        with broker.attach(), broker.attach():
            long = broker.submit(Request(prompt="long"))
            while not backend.batches:
                time.sleep(0.001)
            started = time.monotonic()
            assert broker.call(Request(prompt="short"), timeout=3).text == "trohs"
            assert time.monotonic() - started < 0.9
            long.result()
