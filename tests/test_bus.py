"""The bus on its own: delivery, order, overflow, failures, commands, barriers, closing."""

from __future__ import annotations

import subprocess
import sys
import threading

import anyio
import pytest

from eventbus import BusClosedError, EventBus, EventBusWarning, events
from eventbus.commands import SetLearningRate, StopTraining
from eventbus.testing import Recorder

pytestmark = pytest.mark.anyio


def batch(i: int, run: str = "r") -> events.TrainBatchEnd:
    return events.TrainBatchEnd(run=run, batch=i, logs={"loss": float(i)})


def epoch_end(i: int, run: str = "r") -> events.EpochEnd:
    return events.EpochEnd(run=run, epoch=i, logs={"loss": 1.0})


def test_import_eventbus_does_not_import_keras() -> None:
    code = "import sys, eventbus, eventbus.subscribers, eventbus.adapters; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_subscribing_a_plain_function_names_it() -> None:
    def handler(event: events.Event) -> None: ...

    bus = EventBus()
    with pytest.raises(
        TypeError,
        match=r"^subscribe\(\) needs an async callable, got <function .*handler.*> of type function; define it with `async def handler\(event\): \.\.\.`$",
    ):
        bus.subscribe(handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^subscribe\(\) needs an async callable, got 42 of type int$"):
        bus.subscribe(42)  # type: ignore[arg-type]


def test_unknown_kind_and_bad_options_are_refused() -> None:
    bus = EventBus()
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"^unknown event kind 'epoch_ended'; known kinds: .*, epoch_end, "):
        bus.subscribe(recorder, kinds=["epoch_ended"])
    with pytest.raises(ValueError, match=r"^buffer_size must be an integer > 0, got 0$"):
        bus.subscribe(recorder, buffer_size=0)
    with pytest.raises(ValueError, match=r"^on_error must be 'report', 'stop' or 'raise', got 'ignore'$"):
        bus.subscribe(recorder, on_error="ignore")  # type: ignore[arg-type]


def test_thread_mode_delivers_every_event_in_order_with_gapless_seq() -> None:
    early, late = Recorder(), Recorder()
    with EventBus() as bus:
        bus.subscribe(early)
        for i in range(100):
            bus.publish_nowait(batch(i))
        bus.subscribe(late)  # subscribed while running: sees what is published after
        for i in range(100, 150):
            bus.publish_nowait(batch(i))
    assert [e.batch for e in early.events] == list(range(150))  # type: ignore[attr-defined]
    assert [e.seq for e in early.events] == list(range(150))
    assert [e.batch for e in late.events] == list(range(100, 150))  # type: ignore[attr-defined]
    assert bus.statistics()["Recorder"].delivered == 150


async def test_async_mode_runs_in_the_callers_loop(anyio_backend: str) -> None:
    recorder = Recorder(kinds=[events.EpochEnd])
    async with EventBus() as bus:
        bus.subscribe(recorder)
        await bus.publish(batch(0))
        await bus.publish(epoch_end(0))
    assert [type(e) for e in recorder.events] == [events.EpochEnd]
    assert recorder.events[0].seq == 1


async def test_publishing_from_many_threads_keeps_seq_gapless(anyio_backend: str) -> None:
    recorder = Recorder(lossless=True)
    async with EventBus() as bus:
        bus.subscribe(recorder)

        def produce(run: str) -> None:
            for i in range(500):
                bus.publish_nowait(batch(i, run))

        threads = [threading.Thread(target=produce, args=(f"r{t}",)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            await anyio.to_thread.run_sync(t.join)
    seqs = [e.seq for e in recorder.events]
    assert seqs == list(range(2000))
    for run in ("r0", "r1", "r2", "r3"):  # each producer's own order is kept
        assert [e.batch for e in recorder.events if e.run == run] == list(range(500))  # type: ignore[attr-defined]


async def test_a_lagging_subscriber_drops_batch_events_oldest_first(anyio_backend: str) -> None:
    release = anyio.Event()
    seen: list[events.Event] = []

    async def stuck(event: events.Event) -> None:
        if not seen:
            seen.append(event)
            await release.wait()
        else:
            seen.append(event)

    with pytest.warns(EventBusWarning, match=r"stuck: dropped 9 batch events"):
        async with EventBus(buffer_size=3) as bus:
            await _fill(bus, stuck, seen, release)
    kept = [(type(e).__name__, getattr(e, "batch", None)) for e in seen]
    # batch 0 was being handled; 1..7 dropped; 8, 9, 10 kept; the epoch end never dropped;
    # then 11, 12 pushed out 8 and 9.
    assert kept == [
        ("TrainBatchEnd", 0),
        ("TrainBatchEnd", 10),
        ("EpochEnd", None),
        ("TrainBatchEnd", 11),
        ("TrainBatchEnd", 12),
    ]
    stats = bus.statistics()["stuck"]
    assert (stats.dropped, stats.delivered) == (9, 5)


async def _fill(bus: EventBus, stuck: object, seen: list[events.Event], release: anyio.Event) -> None:
    if True:
        bus.subscribe(stuck, kinds=[events.TrainBatchEnd, events.EpochEnd])  # type: ignore[arg-type]
        dropped_reports = bus.stream(events.EventsDropped)
        bus.publish_nowait(batch(0))
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.001)
        for i in range(1, 11):
            bus.publish_nowait(batch(i))
        bus.publish_nowait(epoch_end(0))
        for i in range(11, 13):
            bus.publish_nowait(batch(i))
        with anyio.fail_after(5):
            report = await dropped_reports.__anext__()
        release.set()
        assert isinstance(report, events.EventsDropped)
        assert (report.subscriber, report.count, report.total) == ("stuck", 7, 7)


def test_dropping_is_reported_at_close() -> None:
    release = threading.Event()

    async def slow(event: events.Event) -> None:
        await anyio.to_thread.run_sync(release.wait)

    with pytest.warns(EventBusWarning, match=r"slow: dropped \d+ batch events"):
        with EventBus(buffer_size=2) as bus:
            bus.subscribe(slow)
            for i in range(50):
                bus.publish_nowait(batch(i))
            release.set()
    assert bus.statistics()["slow"].dropped > 0


async def test_lossless_subscribers_never_drop(anyio_backend: str) -> None:
    release = anyio.Event()
    recorder = Recorder(lossless=True)

    async def gate(event: events.Event) -> None:
        await release.wait()

    async with EventBus(buffer_size=2) as bus:
        bus.subscribe(gate, lossless=True)
        bus.subscribe(recorder)
        for i in range(100):
            bus.publish_nowait(batch(i))
        await anyio.sleep(0)
        release.set()
    assert len(recorder.events) == 100
    assert bus.statistics()["gate"].dropped == 0


async def test_a_failing_subscriber_is_reported_and_others_go_on(anyio_backend: str) -> None:
    recorder = Recorder(kinds=[events.TrainBatchEnd, events.SubscriberFailed])

    async def broken(event: events.Event) -> None:
        raise ZeroDivisionError("boom")

    with pytest.warns(EventBusWarning, match=r"broken: failed on 3 events \(first: ZeroDivisionError: boom\)"):
        async with EventBus() as bus:
            bus.subscribe(broken, kinds=[events.TrainBatchEnd])
            bus.subscribe(recorder)
            for i in range(3):
                bus.publish_nowait(batch(i))
    failures = [e for e in recorder.events if isinstance(e, events.SubscriberFailed)]
    assert [f.cause for f in failures] == [0, 1, 2]
    assert failures[0].subscriber == "broken"
    assert failures[0].error == "ZeroDivisionError: boom"
    assert "raise ZeroDivisionError" in failures[0].traceback
    assert len([e for e in recorder.events if isinstance(e, events.TrainBatchEnd)]) == 3
    assert bus.statistics()["broken"].failed == 3


async def test_a_subscriber_failing_on_every_event_makes_no_feedback_loop(anyio_backend: str) -> None:
    async def broken(event: events.Event) -> None:
        raise RuntimeError("always")

    with pytest.warns(EventBusWarning):
        async with EventBus() as bus:
            bus.subscribe(broken)  # also receives its own failure reports
            bus.publish_nowait(batch(0))
    # one failure, one report (not sent back to it), and no more
    assert bus.statistics()["broken"].failed == 1
    assert bus.statistics().published == 2


def test_issue_from_any_thread_goes_to_the_run_that_began_last() -> None:
    received: list[tuple[str, int, object]] = []
    recorder = Recorder(kinds=[events.CommandIssued, events.CommandRejected])
    with EventBus() as bus:
        bus.subscribe(recorder)
        bus.attach_run("first", lambda seq, command: received.append(("first", seq, command)))
        bus.attach_run("second", lambda seq, command: received.append(("second", seq, command)))
        command = SetLearningRate(learning_rate=0.5)
        worker = threading.Thread(target=bus.issue, args=(command,), kwargs={"subscriber": "ui"})
        worker.start()
        worker.join()
        bus.issue(StopTraining(), subscriber="ui", run="first", cause=7)
    issued = [e for e in recorder.events if isinstance(e, events.CommandIssued)]
    assert [(e.run, e.command, e.subscriber, e.cause) for e in issued] == [
        ("second", SetLearningRate(learning_rate=0.5), "ui", -1),
        ("first", StopTraining(), "ui", 7),
    ]
    assert received == [("second", issued[0].seq, issued[0].command), ("first", issued[1].seq, issued[1].command)]
    assert not [e for e in recorder.events if isinstance(e, events.CommandRejected)]


def test_issue_with_no_run_training_is_recorded_as_rejected() -> None:
    recorder = Recorder(kinds=[events.CommandIssued, events.CommandRejected])
    with EventBus() as bus:
        bus.subscribe(recorder)
        bus.issue(StopTraining(reason="nobody trains"), subscriber="ui")
    issued, rejected = recorder.events
    assert isinstance(issued, events.CommandIssued) and issued.run == "" and issued.subscriber == "ui"
    assert isinstance(rejected, events.CommandRejected)
    assert rejected.issued == issued.seq and rejected.reason == "no run is training"


def test_issue_checks_its_command_and_the_bus() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="expected a command"):
        bus.issue("stop", subscriber="ui")  # type: ignore[arg-type]
    with bus:
        pass
    with pytest.raises(BusClosedError, match="closed"):
        bus.issue(StopTraining(), subscriber="ui")


def test_a_subscriber_with_attach_is_handed_the_bus() -> None:
    class Remote:
        bus: object = None

        def attach(self, bus: object) -> None:
            self.bus = bus

        async def __call__(self, event: events.Event) -> None:
            pass

    remote = Remote()
    with EventBus() as bus:
        bus.subscribe(remote)
        assert remote.bus is bus


async def test_commands_are_recorded_and_routed_to_their_run(anyio_backend: str) -> None:
    received: list[tuple[int, object]] = []
    recorder = Recorder(kinds=[events.CommandIssued, events.CommandRejected])

    async def stopper(event: events.Event) -> object:
        return [StopTraining(reason="enough"), SetLearningRate(learning_rate=0.5)]

    async with EventBus() as bus:
        bus.attach_run("live", lambda seq, command: received.append((seq, command)))
        bus.subscribe(stopper, kinds=[events.EpochEnd])
        bus.subscribe(recorder)
        bus.publish_nowait(epoch_end(0, run="live"))
        bus.publish_nowait(epoch_end(0, run="gone"))
    issued = [e for e in recorder.events if isinstance(e, events.CommandIssued)]
    assert [(e.run, e.command, e.subscriber, e.cause) for e in issued] == [
        ("live", StopTraining(reason="enough"), "stopper", 0),
        ("live", SetLearningRate(learning_rate=0.5), "stopper", 0),
        ("gone", StopTraining(reason="enough"), "stopper", 1),
        ("gone", SetLearningRate(learning_rate=0.5), "stopper", 1),
    ]
    assert received == [(issued[0].seq, issued[0].command), (issued[1].seq, issued[1].command)]
    rejected = [e for e in recorder.events if isinstance(e, events.CommandRejected)]
    assert [e.issued for e in rejected] == [issued[2].seq, issued[3].seq]
    assert rejected[0].reason == "run 'gone' is not training (it ended, or it is a replay)"
    assert bus.statistics()["stopper"].commands == 4


async def test_returning_something_that_is_not_a_command_is_a_failure(anyio_backend: str) -> None:
    recorder = Recorder(kinds=[events.SubscriberFailed])

    async def confused(event: events.Event) -> object:
        return "stop please"

    with pytest.warns(EventBusWarning):
        async with EventBus() as bus:
            bus.subscribe(confused, kinds=[events.EpochEnd])
            bus.subscribe(recorder)
            bus.publish_nowait(epoch_end(0))
    assert recorder.events[0].error.startswith(  # type: ignore[attr-defined]
        "TypeError: a handler returned 'stop please'; return None, a command"
    )


@pytest.mark.parametrize(("on_error", "command"), [("stop", "stop_training"), ("raise", "fail_training")])
async def test_on_error_can_stop_or_fail_training(anyio_backend: str, on_error: str, command: str) -> None:
    received: list[object] = []

    async def broken(event: events.Event) -> None:
        raise ValueError("bad")

    with pytest.warns(EventBusWarning):
        async with EventBus() as bus:
            bus.attach_run("r", lambda seq, c: received.append(c))
            bus.subscribe(broken, on_error=on_error)  # type: ignore[arg-type]
            bus.publish_nowait(epoch_end(0))
    assert len(received) == 1
    assert received[0].kind == command  # type: ignore[attr-defined]
    assert "subscriber broken failed on epoch_end #0: ValueError: bad" in str(received[0])


def test_a_barrier_opens_once_control_subscribers_have_answered() -> None:
    received: list[object] = []
    gate = threading.Event()
    order: list[str] = []

    async def controller(event: events.Event) -> object:
        await anyio.to_thread.run_sync(gate.wait)
        order.append("handled")
        return StopTraining()

    async def observer(event: events.Event) -> None:
        await anyio.sleep(3600)  # not control: never waited for

    with EventBus(close_timeout=0.5) as bus:
        bus.attach_run("r", lambda seq, c: received.append(c))
        bus.subscribe(controller, kinds=[events.EpochEnd], control=True)
        bus.subscribe(observer)
        assert bus.has_control_subscribers
        barrier = bus.publish_with_barrier(epoch_end(0))
        assert not barrier.wait(0.05)
        assert barrier.pending == ["controller"]
        gate.set()
        assert barrier.wait(5)
        assert received == [StopTraining()]  # commands are in before the barrier opens
        assert barrier.pending == []
        with pytest.warns(EventBusWarning, match="observer: 1 events undelivered at close|observer"):
            bus.close()


def test_a_barrier_with_no_control_subscriber_opens_at_once() -> None:
    with EventBus() as bus:
        bus.subscribe(Recorder())
        assert not bus.has_control_subscribers
        assert bus.publish_with_barrier(epoch_end(0)).wait(5)


def test_closing_never_hangs_past_its_timeout_and_counts_the_undelivered() -> None:
    async def sleepy(event: events.Event) -> None:
        await anyio.sleep(3600)

    bus = EventBus(close_timeout=0.2)
    bus.start()
    bus.subscribe(sleepy, lossless=True)
    for i in range(10):
        bus.publish_nowait(batch(i))
    with pytest.warns(EventBusWarning, match=r"sleepy: 9 events undelivered at close"):
        bus.close()
    stats = bus.statistics()["sleepy"]
    assert (stats.delivered, stats.undelivered) == (1, 9)
    bus.close()  # twice is harmless
    with pytest.raises(BusClosedError, match=r"^cannot publish train_batch_end: the bus is closed$"):
        bus.publish_nowait(batch(10))


async def test_streams_iterate_events_and_end_when_the_bus_closes(anyio_backend: str) -> None:
    got: list[int] = []
    async with EventBus() as bus:
        stream = bus.stream(events.EpochEnd)

        async def consume() -> None:
            async for event in stream:
                got.append(event.epoch)  # type: ignore[attr-defined]

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for i in range(3):
                bus.publish_nowait(batch(i))
                bus.publish_nowait(epoch_end(i))
            with anyio.fail_after(5):
                while len(got) < 3:
                    await anyio.sleep(0.001)
            await bus.aclose()
    assert got == [0, 1, 2]


def test_a_bus_runs_once() -> None:
    bus = EventBus()
    with bus:
        pass
    with pytest.raises(RuntimeError, match=r"^this bus was already started \(closed\); an EventBus runs once$"):
        bus.start()


def test_subscribers_may_subscribe_before_the_bus_starts() -> None:
    recorder = Recorder()
    bus = EventBus()
    bus.subscribe(recorder)
    assert bus.statistics()["Recorder"].delivered == 0
    with bus:
        bus.publish_nowait(batch(0))
    assert [e.seq for e in recorder.events] == [0]


def test_a_producer_far_ahead_of_the_loop_sheds_batch_events_at_ingress_counted() -> None:
    recorder = Recorder(lossless=True)
    bus = EventBus(max_backlog=10)
    bus.subscribe(recorder)  # one op in the queue
    for i in range(20):  # published before the loop runs: the backlog fills up
        bus.publish_nowait(batch(i))
    bus.publish_nowait(epoch_end(0))  # never dropped
    with pytest.warns(EventBusWarning, match=r"\(ingress\): dropped 11 batch events, the loop was behind"):
        with bus:
            pass
    kept = recorder.of(events.TrainBatchEnd)
    assert [e.batch for e in kept] == list(range(9))  # type: ignore[attr-defined]
    assert [e.seq for e in recorder.events[:10]] == list(range(10))  # no gap: dropped events get no seq
    report = recorder.of(events.EventsDropped)
    assert [(r.subscriber, r.count) for r in report] == [("(ingress)", 11)]  # type: ignore[attr-defined]
    assert bus.statistics().dropped_at_ingress == 11


async def test_a_failure_report_is_not_sent_to_the_subscriber_that_failed(anyio_backend: str) -> None:
    seen: list[str] = []

    async def broken(event: events.Event) -> None:
        seen.append(event.kind)
        raise RuntimeError("always")

    recorder = Recorder(kinds=[events.SubscriberFailed])
    with pytest.warns(EventBusWarning):
        async with EventBus() as bus:
            bus.subscribe(broken)
            bus.subscribe(recorder)
            for i in range(3):
                bus.publish_nowait(batch(i))
    assert seen == ["train_batch_end"] * 3
    tracebacks = [e.traceback for e in recorder.events]  # type: ignore[attr-defined]
    assert "RuntimeError: always" in tracebacks[0] and tracebacks[1:] == ["", ""]


async def test_an_unread_stream_does_not_hold_up_closing(anyio_backend: str) -> None:
    async with EventBus(close_timeout=30) as bus:
        stream = bus.stream()
        for i in range(3):
            bus.publish_nowait(batch(i))
        with anyio.fail_after(5):
            await bus.aclose()
    # what was queued can still be read, then the stream ends
    assert [e.batch async for e in stream] == [0, 1, 2]  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_background_thread_runs_either_backend(backend: str) -> None:
    recorder = Recorder()
    with EventBus(backend=backend) as bus:  # type: ignore[arg-type]
        bus.subscribe(recorder)
        for i in range(10):
            bus.publish_nowait(batch(i))
    assert [e.seq for e in recorder.events] == list(range(10))
    with pytest.raises(ValueError, match=r"^backend must be 'asyncio' or 'trio', got 'curio'$"):
        EventBus(backend="curio")  # type: ignore[arg-type]


async def test_batched_subscribers_get_lists_in_order_and_still_answer(anyio_backend: str) -> None:
    batches: list[list[int]] = []
    received: list[object] = []

    async def sink(events_: list[events.Event]) -> object:
        batches.append([e.seq for e in events_])
        return StopTraining() if any(isinstance(e, events.EpochEnd) for e in events_) else None

    async with EventBus() as bus:
        bus.attach_run("r", lambda seq, command: received.append(command))
        subscription = bus.subscribe(sink, batched=True, lossless=True, kinds=[events.TrainBatchEnd, events.EpochEnd])
        for i in range(1000):
            bus.publish_nowait(batch(i))
        bus.publish_nowait(epoch_end(0))
    seqs = [s for b in batches for s in b]
    assert seqs == list(range(1001))
    assert max(len(b) for b in batches) <= 512
    assert received == [StopTraining()]
    assert subscription.statistics().delivered == 1001


def test_a_batched_control_subscriber_opens_barriers() -> None:
    async def controller(events_: list[events.Event]) -> None:
        return None

    with EventBus() as bus:
        bus.subscribe(controller, batched=True, control=True)
        for i in range(10):
            bus.publish_nowait(batch(i))
        assert bus.publish_with_barrier(epoch_end(0)).wait(5)


def test_a_barrier_waits_for_control_subscribers_of_other_kinds_to_catch_up() -> None:
    """A stop asked at a batch must be in before the epoch's end lets training go on."""
    received: list[object] = []
    gate = threading.Event()

    async def nan_watch(event: events.Event) -> object:
        await anyio.to_thread.run_sync(gate.wait)  # slow on a batch
        return StopTraining()

    with EventBus() as bus:
        bus.attach_run("r", lambda seq, c: received.append(c))
        bus.subscribe(nan_watch, kinds=[events.TrainBatchEnd], control=True)
        bus.publish_nowait(batch(0))
        barrier = bus.publish_with_barrier(epoch_end(0))  # not a kind nan_watch takes
        assert not barrier.wait(0.1)
        assert barrier.pending == ["nan_watch"]
        gate.set()
        assert barrier.wait(5)
        assert received == [StopTraining()]
