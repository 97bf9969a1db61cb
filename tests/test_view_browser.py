"""``ttc view``'s page in a real browser: headless Chromium from Debian's packages (``apt-get install
chromium chromium-driver``; no browser download), driven by Selenium. The page of ``ttc demo --fast``'s
search is filtered to the hardest bin's wrong answers, a problem is opened, and its tree must hold the
parquet's nodes with the parquet's scores; a screenshot of it must not be blank.

Slow (the demo takes 1-2 minutes on 2 CPU cores): ``make test-browser`` (or ``make test-slow``). Skipped,
saying so, only where no Chromium binary is installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.shards import load_sharded

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver():
    if CHROMIUM is None:
        pytest.skip("no Chromium binary: apt-get install chromium chromium-driver (Debian's packages)")
    # Imported here: a default-suite run must not need selenium (the dev extra brings it).
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    # --no-sandbox: the tests may run as root (a container); the page is our own file.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER) if CHROMEDRIVER else Service()
    browser = webdriver.Chrome(service=service, options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> tuple[Path, Path]:
    # TTC_VIEW_DEMO_DIR: a finished `ttc demo --fast true` output to reuse (the demo is most of the time).
    out = Path(os.environ.get("TTC_VIEW_DEMO_DIR") or tmp_path_factory.mktemp("demo"))
    if not (out / "report" / "report.json").is_file():
        run_stage("demo", ["--fast", "true", "--output_dir", str(out)])
    result = run_stage("view", [
        "--search_dir", str(out / "search"), "--select_dir", str(out / "select"),
        "--difficulty_dir", str(out / "difficulty"), "--output_dir", str(tmp_path_factory.mktemp("view")),
    ])  # fmt: skip
    return out, Path(result["page"])


def errors_in(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_value(value)


def option_values(driver, select_id: str) -> list[str]:
    from selenium.webdriver.support.ui import Select

    return [o.get_attribute("value") for o in Select(driver.find_element("id", select_id)).options]


def not_blank(png: Path) -> None:
    from PIL import Image, ImageStat

    image = Image.open(png).convert("RGB")
    assert image.size[0] >= 800 and image.size[1] >= 600
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 64, "the screenshot has almost no colours"
    assert max(ImageStat.Stat(image).stddev) > 20, "the screenshot is almost one colour"


def test_the_demo_s_hardest_wrong_answers_open_onto_the_parquet_s_tree(driver, demo_page, tmp_path):
    out, page = demo_page
    driver.get(page.as_uri())
    assert errors_in(driver) == []
    assert driver.find_element("id", "title").text.startswith("ttc view:")

    bins = [v for v in option_values(driver, "f-bin") if v]
    hardest = "5" if "5" in bins else max(bins, key=int)
    strategies = [v for v in option_values(driver, "f-strategy") if v.startswith("beam_search")]
    budgets = sorted((v for v in option_values(driver, "f-budget") if v), key=int, reverse=True)
    choose(driver, "f-bin", hardest)
    choose(driver, "f-correct", "wrong")
    choose(driver, "f-strategy", strategies[0])
    for budget in budgets:  # the largest budget with a wrong answer in that bin: the biggest tree
        choose(driver, "f-budget", budget)
        if driver.find_elements("css selector", "#problem-table .tabulator-row"):
            break
    rows = driver.find_elements("css selector", "#problem-table .tabulator-row")
    assert rows, f"no wrong beam-search answer in bin {hardest}"
    listed = driver.execute_script("return window.ttcView.table.getData('active')")
    assert listed and all(str(e["bin"]) == hardest and not e["correct"] for e in listed)
    assert all(e["strategyName"] == strategies[0] and str(e["budget"]) == budget for e in listed)

    rows[0].click()
    detail = driver.find_element("id", "detail")
    assert detail.is_displayed()
    problem_id = driver.find_element("id", "d-id").text
    entry = listed[0]
    assert problem_id == entry["pid"]

    # The parquet's row of that problem and run: its tree, node for node.
    # (Two width settings that resolve to one width write the same row twice: the first is it.)
    row = next(
        dict(r)
        for r in load_sharded(out / "search")
        if r["problem_id"] == problem_id and r["method"] == "beam_search" and r["budget"] == int(budget)
    )
    assert row["tree"]
    svg = driver.find_element("css selector", "svg#tree")
    nodes = driver.find_elements("css selector", "svg#tree g.node")
    assert int(svg.get_attribute("data-nodes")) == len(nodes) == len(row["tree"])
    shown = {int(n.get_attribute("data-node")): n for n in nodes}
    for i, node in enumerate(row["tree"]):
        assert float(shown[i].get_attribute("data-score")) == pytest.approx(node["score"], abs=5e-5)
        assert shown[i].get_attribute("data-status") == node["status"]
    assert sum(n.get_attribute("data-status") == "final" for n in nodes) == row["num_beams"]
    # The pick's votes are the parquet's: candidates sharing the selected answer.
    selected = entry["selected"]
    assert not row["correct"][selected]
    assert entry["votes"] == sum(a == row["answers"][selected] for a in row["answers"])

    # A node opens its path; the screenshot of the tree is not blank.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", svg)
    shot = tmp_path / "viewer_tree.png"
    assert driver.save_screenshot(str(shot))
    not_blank(shot)
    if os.environ.get("TTC_SCREENSHOT_DIR"):  # keep it for a person to look at
        shutil.copy(shot, Path(os.environ["TTC_SCREENSHOT_DIR"]) / shot.name)
    final = next(n for n in nodes if n.get_attribute("data-status") == "final")
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", final)
    panel = driver.find_element("id", "d-node")
    assert panel.is_displayed() and panel.text.startswith("Final candidate #")
    assert errors_in(driver) == []


def test_best_of_n_groups_and_the_aggregate_views_in_the_browser(driver, demo_page):
    out, page = demo_page
    driver.get(page.as_uri())
    data = driver.execute_script("return window.ttcView.data")
    problem = next(
        i for i, p in enumerate(data["problems"]) if any(r["method"] == "best_of_n" for r in p["rows"])
    )
    row_index = next(i for i, r in enumerate(data["problems"][problem]["rows"]) if r["method"] == "best_of_n")
    driver.execute_script(
        "window.ttcView.openProblem(arguments[0], arguments[1], null, null, null)", problem, row_index
    )
    # Each answer group's weight is the sum of its candidates' scores in the parquet (last step's).
    row = next(
        dict(r)
        for r in load_sharded(out / "search")
        if r["problem_id"] == data["problems"][problem]["id"] and r["method"] == "best_of_n"
        and r["budget"] == data["problems"][problem]["rows"][row_index]["budget"]
    )  # fmt: skip
    groups = driver.find_elements("css selector", "#d-body .group")
    assert groups
    for group in groups:
        members = [
            int(c.get_attribute("data-candidate")) for c in group.find_elements("css selector", ".candidate")
        ]
        assert int(group.get_attribute("data-votes")) == len(members)
        assert len({row["answers"][c] for c in members}) == 1
        expected = sum(row["step_scores"][c][-1] for c in members)
        assert float(group.get_attribute("data-weight")) == pytest.approx(expected, abs=len(members) * 5e-5)

    driver.find_element("css selector", '.tab[data-tab="aggregates"]').click()
    assert driver.find_element("id", "a-chart").is_displayed()
    assert driver.execute_script("return Chart.getChart(document.getElementById('a-chart')) !== undefined")
    by_step = data["aggregates"]["by_step"]["all"]
    cells = driver.find_elements("css selector", "#a-table tr[data-index]")
    assert len(cells) == len(by_step["index"])
    links = driver.find_elements("css selector", "#o-table a.problem-link")
    if links:  # an over-rated step opens its problem
        links[0].click()
        assert driver.find_element("id", "detail").is_displayed()
    assert errors_in(driver) == []
