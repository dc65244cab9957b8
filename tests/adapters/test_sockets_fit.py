"""Remote subscribers during a real Keras ``fit``: 64 TCP clients, and the live page in headless Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from kerasfit import regression_data, regression_model

from eventbus import EventBus, events
from eventbus.adapters.keras import KerasBridge
from eventbus.adapters.sockets import EventClient, SocketServer, connect

LIMIT = 60.0
EPOCHS = 3


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_64_clients_during_a_fit_get_every_epoch_event_in_order(anyio_backend: str) -> None:
    x, y = regression_data()
    model = regression_model()
    with anyio.fail_after(LIMIT):
        async with SocketServer("tcp://127.0.0.1:0", client_buffer=4) as server, EventBus() as bus:
            bus.subscribe(server)
            clients = [connect(server.url) for _ in range(64)]
            got: dict[int, list[events.Event]] = {}

            async def read(i: int, client: EventClient) -> None:
                got[i] = []
                async for event in client:
                    got[i].append(event)
                    if isinstance(event, events.TrainEnd):
                        return

            async with anyio.create_task_group() as tg:
                for i, client in enumerate(clients):
                    tg.start_soon(read, i, client)
                while server.clients < 64:
                    await anyio.sleep(0.01)
                await KerasBridge(bus).fit(model, x, y, batch_size=16, epochs=EPOCHS, verbose=0)
            for client in clients:
                await client.aclose()
            published = bus.statistics().published
    for i, stream in got.items():
        seqs = [e.seq for e in stream]
        assert seqs == sorted(set(seqs)), i  # in order, no duplicate
        assert [e.epoch for e in stream if isinstance(e, events.EpochEnd)] == list(range(EPOCHS))  # type: ignore[attr-defined]
        assert isinstance(stream[0], events.TrainBegin)
        # Gapless apart from reported drops (only batch events are ever dropped).
        assert len(stream) + clients[i].dropped == published, i
        assert not clients[i].gaps


# --- the live page in a browser ----------------------------------------------------------


def _browser_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium from the Debian packages (``apt-get install chromium chromium-driver``)."""
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("EVENTBUS_BROWSER_TESTS") == "require":
            pytest.fail("chromium and chromium-driver are required here: apt-get install chromium chromium-driver")
        pytest.skip("no chromium: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver

    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def test_the_page_draws_the_loss_of_a_short_run_live(chromium: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    x, y = regression_data()
    model = regression_model()
    with SocketServer("ws://127.0.0.1:0") as server, EventBus() as bus:
        bus.subscribe(server)
        assert server.page_url is not None
        chromium.get(server.page_url)
        wait = WebDriverWait(chromium, 20)
        wait.until(lambda d: d.find_element(By.ID, "status").text == "connected")  # open before training starts
        history = model.fit(x, y, batch_size=16, epochs=EPOCHS, verbose=0, callbacks=[KerasBridge(bus)])
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#epochs tr")) == EPOCHS)
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("training ended"))
        rows = chromium.find_elements(By.CSS_SELECTOR, "#epochs tr")
        shown = [(int(r.get_attribute("data-epoch")), float(r.find_elements(By.TAG_NAME, "td")[1].text)) for r in rows]
        points = chromium.find_element(By.ID, "line-loss").get_attribute("points").split()
    assert [epoch for epoch, _ in shown] == list(range(EPOCHS))
    assert [loss for _, loss in shown] == pytest.approx(history.history["loss"], rel=1e-3)  # shown to 4 digits
    assert len(points) == EPOCHS  # one point of the curve per epoch
