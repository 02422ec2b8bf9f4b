"""The console in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium; nothing is downloaded), on the real service:
sign in, see the counters move under a small load, find a command and its waterfall,
re-drive a dead letter and see its status change.

With ``CONSOLE_SCREENSHOT`` set to a path, it saves the console under that load there
(docs/console.png is one)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    LiveService,
    create_show,
    place_reservation,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = (
            "Debian's chromium and chromium-driver are not installed (make test installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot_under_load(live: LiveService, driver: WebDriver, path: str) -> None:
    """The console while 6 clients create shows for 60 s, each waiting for its outcome
    (``Prefer: wait``) before the next (for docs/console.png)."""
    deadline = time.monotonic() + 60

    def client_loop(number: int) -> None:
        while time.monotonic() < deadline:
            create_show(live, f"load-{number}-{uuid.uuid4().hex[:8]}")

    with ThreadPoolExecutor(7) as clients:
        running = [clients.submit(client_loop, n) for n in range(6)]
        time.sleep(55)
        driver.save_screenshot(path)
        for each in running:
            each.result()


def count(driver: WebDriver, status: str) -> int:
    # Read in one script: the event stream replaces elements between two of Selenium's calls.
    found = driver.execute_script(
        "const el = document.querySelector(arguments[0]); return el ? el.textContent : '0';",
        f'[data-count="{status}"]',
    )
    return int(found or 0)


def status_of(driver: WebDriver, command_id: str) -> str | None:
    """The status the dead letters' table shows for ``command_id``; None: not listed."""
    found = driver.execute_script(
        "const el = document.querySelector(arguments[0]); return el ? el.textContent : null;",
        f'[data-status-of="{command_id}"]',
    )
    return None if found is None else str(found)


def click(driver: WebDriver, selector: str) -> None:
    """Click ``selector``, found again if the event stream replaced it meanwhile."""
    for _ in range(10):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            continue
        return
    raise AssertionError(f"{selector} kept being replaced")


def test_an_operator_follows_the_load_finds_a_command_and_re_drives_a_dead_letter(
    live: LiveService, chromium: WebDriver
) -> None:
    driver = chromium
    driver.get(live.base + "/console")
    driver.find_element(By.ID, "key").send_keys(ADMIN_TOKEN)
    driver.find_element(By.ID, "sign-in").click()
    wait_until(lambda: bool(driver.find_elements(By.ID, "live")), 10, "the console")
    wait_until(lambda: driver.find_element(By.ID, "live").text == "live", 15, "its event stream")
    before = count(driver, "succeeded")

    # A small load: shows created, and a reservation whose charge dead-letters.
    with ThreadPoolExecutor(4) as clients:
        shows = [uuid.uuid4().hex[:10] for _ in range(8)]
        created = list(clients.map(lambda show: create_show(live, show), shows))
    show_id, reservation_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    create_show(live, show_id, seat="A1", price_cents=10)
    place_reservation(live, show_id, reservation_id, "tok_outage", wait=False)

    # The counters move without a reload (the event stream).
    wait_until(lambda: count(driver, "succeeded") >= before + 9, 30, "the counter to move")
    chart = driver.find_element(By.CSS_SELECTOR, "#throughput polyline")
    assert chart.get_attribute("points")

    # The reservation's charge, dead-lettered, appears with its button.
    client = live.client()

    def charge() -> str | None:
        found = client.request("GET", f"/reservations/{reservation_id}")
        if found.status != 200:
            return None
        listed = client.request(
            "GET", f"/commands?correlation_id={found.body['saga_id']}&type=ChargePayment"
        ).body["items"]
        return str(listed[0]["command_id"]) if listed else None

    wait_until(lambda: charge() is not None, 30, "the reservation's charge")
    dead = charge()
    saga_id = client.request("GET", f"/reservations/{reservation_id}").body["saga_id"]
    wait_until(
        lambda: bool(driver.find_elements(By.CSS_SELECTOR, f'button[data-redrive="{dead}"]')),
        60,
        "the dead-lettered charge in the console",
    )
    if os.environ.get("CONSOLE_SCREENSHOT"):
        screenshot_under_load(live, driver, os.environ["CONSOLE_SCREENSHOT"])

    # Re-drive it: its status changes on the page, and in the service.
    click(driver, f'button[data-redrive="{dead}"]')
    wait_until(
        lambda: status_of(driver, str(dead)) != "dead_lettered",
        15,
        "the dead letter's status to change",
    )
    admin = live.client(ADMIN_TOKEN)

    def redriven() -> bool:
        # The registry is a view: it has the re-drive once the projector applied it.
        history = admin.request("GET", f"/commands/{dead}").body["history"]
        return any("re-driven" in (change["detail"] or "") for change in history)

    wait_until(redriven, 15, "the registry to show the re-drive")

    # Find a command by its id, and its waterfall.
    command_id = created[0]["command_id"]
    search = driver.find_element(By.ID, "q")
    search.clear()
    search.send_keys(command_id)
    driver.find_element(By.ID, "find").click()
    wait_until(lambda: bool(driver.find_elements(By.ID, "found")), 10, "the search's results")
    driver.find_element(By.CSS_SELECTOR, f'#found a[href*="{command_id}"]').click()
    wait_until(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "svg.waterfall rect")) >= 5,
        10,
        "the command's waterfall",
    )
    hops = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg.waterfall text:not(.ms)")]
    assert hops[0] == "accepted"
    assert any(h.startswith("visible") for h in hops)
    # And a saga's commands by its correlation id.
    search = driver.find_element(By.ID, "q")
    search.clear()
    search.send_keys(saga_id)
    driver.find_element(By.ID, "find").click()
    wait_until(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "#found tr")) >= 3,
        10,
        "the saga's commands",
    )
