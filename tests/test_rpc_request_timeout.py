"""The client's request timeout fires at its deadline: the mechanism on a simulated clock, then once for real."""

from __future__ import annotations

import asyncio
import time
from concurrent import futures

import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402

from alchemy_gym.rpc import connection  # noqa: E402
from alchemy_gym.rpc.connection import (  # noqa: E402
    AsyncRpcConnection,
    RequestTimeout,
    RpcConnection,
    check_period,
    next_check_delay,
)

TIMEOUTS = [0.01, 0.05, 0.3, 1.0, 4.0, 30.0, 300.0, 3600.0]


def _simulate(timeout: float, start: float) -> tuple[float, int]:
    """Run the checks on a simulated clock (first check one period after t=0, a request from ``start``
    on that is never answered); returns when the check fires and how many checks ran."""
    period = check_period(timeout)
    now, checks = period, 0
    while True:
        checks += 1
        delay = next_check_delay(now, start if now >= start else None, timeout, period)
        if delay is None:
            return now, checks
        assert 0 < delay <= period
        now += delay


@pytest.mark.parametrize("timeout", TIMEOUTS)
@pytest.mark.parametrize("phase", [0.0, 0.01, 0.37, 0.5, 0.99])
def test_the_check_fires_at_the_deadline_not_up_to_a_period_late(timeout, phase):
    period = check_period(timeout)
    start = 3 * period + phase * period  # the request goes out between two checks
    fired, checks = _simulate(timeout, start)
    deadline = start + timeout
    assert fired >= deadline  # never early
    assert fired - deadline <= 1e-9 * max(timeout, 1.0)  # at the deadline itself (float rounding aside)
    assert fired - deadline <= 0.1 * timeout  # the bound, with all the room left for wake-up latency
    # and cheaply: about one check a period, plus the one scheduled at the deadline
    assert checks <= (fired / period) + 3


def test_the_check_period_is_a_quarter_of_the_timeout_within_bounds():
    assert check_period(1.0) == 0.25
    assert check_period(300.0) == 1.0
    assert check_period(0.001) == 0.01
    assert next_check_delay(5.0, None, 2.0, 0.5) == 0.5  # nothing in flight: a period
    assert next_check_delay(5.0, 4.0, 2.0, 0.5) == 0.5  # a second left: a period
    assert next_check_delay(5.0, 3.2, 2.0, 0.5) == pytest.approx(0.2)  # 0.2 s left: wake at the deadline
    assert next_check_delay(5.0, 3.0, 2.0, 0.5) is None  # overdue


class _Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_watchdog_thread_cancels_at_the_deadline(monkeypatch):
    clock = _Clock(0.0)
    cancelled_at = []
    watchdog = connection._Watchdog(2.0, cancel=lambda: cancelled_at.append(clock.now))
    watchdog.stop()  # its own thread ends; the loop is run below on the simulated clock

    class SimulatedStop:
        def wait(self, delay):
            clock.now += delay
            return False

    monkeypatch.setattr(connection, "_monotonic", clock)
    watchdog._stop = SimulatedStop()
    watchdog.sequence, watchdog.started = 1, 0.7  # a request sent at 0.7 s, never answered
    watchdog._run()
    assert watchdog.fired and cancelled_at == [pytest.approx(2.7, abs=1e-9)]


def test_the_async_check_cancels_at_the_deadline(monkeypatch):
    clock = _Clock(100.0)
    monkeypatch.setattr(connection, "_monotonic", clock)

    class SimulatedLoop:
        def __init__(self) -> None:
            self.pending = None

        def call_later(self, delay, callback):
            self.pending = (clock.now + delay, callback)
            return asyncio.get_running_loop().call_later(3600, lambda: None)  # a handle to cancel

    async def main():
        channel = grpc.aio.insecure_channel("127.0.0.1:1")  # never used: no request is sent
        conn = AsyncRpcConnection(channel, timeout=2.0)
        conn._watch.cancel()
        loop = SimulatedLoop()
        conn._loop = loop
        conn._started = 100.3  # a request in flight since 100.3
        conn._check()
        while not conn._timed_out:
            when, callback = loop.pending
            clock.now = when
            callback()
        fired = clock.now
        await conn.close()
        await channel.close()
        return fired

    assert asyncio.run(main()) == pytest.approx(102.3, abs=1e-9)


# ------------------------------------------------------------------ against a real, silent server


@pytest.fixture
def silent_server():
    """A gRPC server that takes dm_env_rpc requests and never answers."""

    def process(request_iterator, context):
        for _ in request_iterator:  # until the client cancels
            pass
        return
        yield  # a generator: a streaming handler

    handler = grpc.stream_stream_rpc_method_handler(process)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("dm_env_rpc.v1.Environment", {"Process": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait(5)


def test_a_blocking_request_to_a_silent_server_times_out_and_never_early(silent_server):
    channel = grpc.insecure_channel(silent_server)
    conn = RpcConnection(channel, timeout=0.4)
    try:
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match="did not answer StepRequest within 0.4 s"):
            conn.send(pb.StepRequest())
        assert time.monotonic() - start >= 0.4
        with pytest.raises(RequestTimeout, match="an earlier request got no answer"):
            conn.send(pb.StepRequest())
    finally:
        conn.close()
        channel.close()


def test_an_async_request_to_a_silent_server_times_out_and_never_early(silent_server):
    async def main():
        channel = grpc.aio.insecure_channel(silent_server)
        conn = AsyncRpcConnection(channel, timeout=0.4)
        try:
            start = time.monotonic()
            with pytest.raises(RequestTimeout, match="did not answer StepRequest within 0.4 s"):
                await conn.send(pb.StepRequest())
            return time.monotonic() - start
        finally:
            await conn.close()
            await channel.close()

    assert asyncio.run(main()) >= 0.4
