"""Must-show 4: ``speedrun report --html`` for a finished batch, loaded offline in headless Chromium.

The batch is real (oracle and null on toy-r1-r2 with slower steps, two scorer
repeats, so the intervals come from data); the browser runs with the network emulated offline and
must see the leaderboard rows and the plots. The screenshot is kept under the
test's output folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

Cli = Callable[..., CompletedProcess[str]]
TASK = "toy-r1-r2"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium and chromium-driver are not installed (.ci/setup-chromium.sh installs them)",
)


@pytest.fixture
def finished_batch(slow_toy_env: dict[str, str], cli: Cli) -> list[dict]:
    result = cli("demo", "--task", TASK, "--repeats", "2", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["agent"], r["outcome"]) for r in rows] == [("oracle", "scored"), ("null", "scored")], rows
    return rows


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,2400")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(options=options, service=service)


def test_report_site_renders_offline(cli: Cli, finished_batch: list[dict], tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = cli("report", "--html", str(site), "--json")
    assert result.returncode == 0, result.stderr
    board = json.loads(result.stdout)
    assert [(r["task"], r["agent"]) for r in board] == [(TASK, "oracle"), (TASK, "null")], "best FSR first"
    assert all(r["fsr_interval"] is not None for r in board), "two repeats give every FSR an interval"
    index = site / "index.html"
    html = index.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html, "the site must not fetch anything"

    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        driver.get(index.as_uri())
        leaderboard = driver.find_element(By.ID, "leaderboard")
        body_rows = leaderboard.find_elements(By.CSS_SELECTOR, "tbody tr")
        seen = {tuple(c.text for c in r.find_elements(By.TAG_NAME, "td")[:2]) for r in body_rows}
        assert seen == {(TASK, "oracle"), (TASK, "null")}
        plots = driver.find_elements(By.CSS_SELECTOR, "svg.plot")
        labels = [p.get_attribute("aria-label") for p in plots]
        assert "FSR by task (mean, 95% CI)" in labels
        assert f"Loss curves: {TASK}" in labels
        fsr_plot = plots[labels.index("FSR by task (mean, 95% CI)")]
        assert fsr_plot.size["width"] > 300 and fsr_plot.size["height"] > 200, "the plot is laid out"
        # one point per (task, agent) with its interval bars, drawn by the browser
        assert len(fsr_plot.find_elements(By.TAG_NAME, "circle")) == 2
        loss_plot = plots[labels.index(f"Loss curves: {TASK}")]
        assert len(loss_plot.find_elements(By.TAG_NAME, "polyline")) == 4  # baseline, reference, 2 agents
        driver.save_screenshot(str(tmp_path / "report.png"))

        link = driver.find_element(By.CSS_SELECTOR, "#attempts tbody tr a")
        link.click()
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Attempt ")
        timeline_rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
        kinds = {r.find_elements(By.TAG_NAME, "td")[2].text for r in timeline_rows}
        assert {"tool call", "scoring"} <= kinds
        driver.save_screenshot(str(tmp_path / "attempt.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'report.png'}, {tmp_path / 'attempt.png'}")
