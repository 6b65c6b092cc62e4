"""The playground page at ``/``, driven in Debian's Chromium against a real ``python -m service`` process.

Chromium is found as ``$CHROMIUM`` or ``chromium`` / ``chromium-browser`` on PATH; the tests skip only when
there is none (CI installs Debian's ``chromium`` package, so CI never skips). Screenshots land in
``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import cgan_contract as contract
from cgan_testing.fakes import write_version
from service import imaging

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI and dev containers run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "playground-test-token"
FASHION_NAMES = ["Top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
# The grid counts once its blob: URL has decoded; an error box ends the wait too, so failures name the error.
GRID_OR_ERROR_JS = """(previous) => {
  const g = document.getElementById("grid");
  return (!g.hidden && g.complete && g.naturalWidth > 0 && g.src.startsWith("blob:") && g.src !== previous)
    || !document.getElementById("error").hidden;
}"""
#: The grid each page showed last: a wait after a click must see a new grid, not the one still on screen
#: while the request is in flight (every grid is a fresh blob: URL).
_SHOWN: dict[int, str] = {}


def find_chromium() -> str | None:
    # An explicit $CHROMIUM is used as given: a wrong path should fail the launch, not skip the tests.
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api_detail(url: str) -> str:
    """The service's own message for a failing request, so the tests need not restate its wording."""
    status, body = get(url)
    assert status >= 400, f"{url} unexpectedly succeeded"
    return json.loads(body)["detail"]


def get_status(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:  # not listening yet
        return None


@contextmanager
def serve(models_dir: Path, log_path: Path, **env: str) -> Iterator[str]:
    """``python -m service`` on a free loopback port, ready to answer; yields its base URL."""
    environ = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "DEFAULT_MODEL")}
    environ.update(
        MODELS_DIR=str(models_dir),
        RELOAD_INTERVAL="0",
        ORT_INTRA_OP_THREADS="1",
        SHUTDOWN_DRAIN_SECONDS="0",  # teardown should not wait for load balancers that do not exist
        LOG_LEVEL="warning",
        BUNDLED_MODELS="0",
        GRPC_PORT="0",  # HTTP only: the default 8001 may be taken on a shared machine
        **env,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while get_status(base + "/readyz") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"service did not become ready:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def add_evaluated_model(models_dir: Path, name: str) -> contract.ModelCard:
    """A second model: the fixture's generator under other class names, with a quality section."""
    source = models_dir / "digits" / "1"
    target = models_dir / name / "1"
    shutil.copytree(source, target)
    card = json.loads((source / contract.CARD_FILE).read_text())
    card.update(
        name=name,
        class_names=FASHION_NAMES,
        quality={
            "samples_per_class": 100,
            "label_accuracy": 0.9712,
            "per_class_accuracy": [0.9 + i / 100 for i in range(10)],
            "judge_test_accuracy": 0.985,
            "fid": 4.25,
            "fid_floor": 1.1,
            "fid_ratio": 3.864,
            "gan_train_accuracy": 0.913,
            "real_train_accuracy": 0.97,
            "diversity_ratio": 0.95,
            "mode_collapse": False,
            "evaluated_at": "2026-01-02T03:04:05Z",
        },
    )
    validated = contract.ModelCard.model_validate(card)
    (target / contract.CARD_FILE).write_text(contract.card_json(validated))
    return validated


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium: install Debian's chromium package or point $CHROMIUM at a Chromium binary")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """Opens the playground in a fresh context; uncaught script errors fail the test."""
    contexts = []
    script_errors: list[str] = []

    def open_(base: str) -> Page:
        context = browser.new_context(viewport={"width": 1100, "height": 820})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        page.goto(base + "/")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert script_errors == []


def grid_bytes(page: Page) -> bytes:
    return bytes(
        page.evaluate(
            """async () => {
              const response = await fetch(document.getElementById("grid").src);
              return Array.from(new Uint8Array(await response.arrayBuffer()));
            }"""
        )
    )


def quality_rows(page: Page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries(
          Array.from(
            document.querySelectorAll("#quality dt"),
            (dt) => [dt.textContent, dt.nextElementSibling.textContent],
          )
        )"""
    )


def served_card(base: str, name: str) -> contract.ModelCard:
    models = json.loads(get(base + "/v1/models")[1])["models"]
    return contract.ModelCard.model_validate(next(m["card"] for m in models if m["name"] == name))


def wait_for_grid(page: Page) -> None:
    page.wait_for_function(GRID_OR_ERROR_JS, arg=_SHOWN.get(id(page), ""))
    error = page.locator("#error")
    assert error.is_hidden(), f"the page shows an error instead of the grid: {error.inner_text()}"
    _SHOWN[id(page)] = page.eval_on_selector("#grid", "g => g.src")


def grid_size(page: Page) -> tuple[int, int]:
    return tuple(page.eval_on_selector("#grid", "g => [g.naturalWidth, g.naturalHeight]"))


def curl_url(page: Page) -> str:
    command = page.locator("#curl").inner_text()
    match = re.search(r"'(http://[^']+)'", command)
    assert match, command
    return match.group(1)


def test_generates_a_grid_and_shows_errors_in_words(models_dir: Path, tmp_path: Path, open_page) -> None:
    add_evaluated_model(models_dir, "fashion")
    with serve(models_dir, tmp_path / "service.log") as base:
        page = open_page(base)
        expect(page.locator("#model option")).to_have_count(2)
        page.get_by_label("Model", exact=True).select_option("digits")
        expect(page.locator("#quality")).to_contain_text("not evaluated yet")

        page.get_by_label("Class", exact=True).select_option("7")
        page.get_by_label("Images (n)").fill("16")
        seed = page.get_by_label("Seed", exact=True)
        seed.fill("1")
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)

        h, w, _ = served_card(base, "digits").image_shape
        assert grid_size(page) == imaging.grid_size(16, (h, w))
        # The curl command is the page's request: fetching its URL gives the very bytes on screen.
        url = curl_url(page)
        assert "label=7" in url and "n=16" in url and "seed=1" in url and "model=digits" in url
        assert get(url) == (200, grid_bytes(page))
        expect(page.locator("#curl")).not_to_contain_text("Authorization")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "playground.png", full_page=True)

        page.get_by_label("Model", exact=True).select_option("fashion")
        expect(page.get_by_label("Class", exact=True)).to_have_value("7")
        expect(page.locator("#label option:checked")).to_have_text("7: Sneaker")
        rows = quality_rows(page)
        assert rows["Label accuracy"] == "97.1%"
        assert rows["Accuracy, class 7: Sneaker"] == "97.0%"
        assert rows["FID ratio"] == "3.864"
        assert rows["Mode collapse"] == "no"

        for bad_seed in ("-5", "abc"):
            seed.fill(bad_seed)
            page.get_by_role("button", name="Generate").click()
            error = page.get_by_role("alert")
            expect(error).to_contain_text("Error 422")
            expect(error).to_contain_text(api_detail(curl_url(page)))
            expect(page.locator("#grid")).to_be_hidden()

        page.get_by_role("button", name="Random").click()
        random_seed = seed.input_value()
        assert random_seed.isdigit()
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)
        expect(page.locator("#caption")).to_contain_text(f"seed {random_seed}")


def test_token_is_sent_from_memory_and_never_shown(models_dir: Path, tmp_path: Path, open_page) -> None:
    with serve(models_dir, tmp_path / "service.log", API_TOKEN=TOKEN) as base:
        page = open_page(base)
        expect(page.locator("#model option")).to_have_count(1)
        expect(page.locator("#quality")).to_contain_text("not evaluated yet")
        token = page.get_by_label("API token")
        expect(token).to_have_attribute("type", "password")

        page.get_by_role("button", name="Generate").click()
        error = page.get_by_role("alert")
        expect(error).to_contain_text("Error 401")
        expect(error).to_contain_text(api_detail(curl_url(page)))
        # After a 401 the command carries the header, so a copied command works once API_TOKEN is exported.
        expect(page.locator("#curl")).to_contain_text('-H "Authorization: Bearer $API_TOKEN"')

        token.fill(TOKEN)
        nrow = 8
        page.get_by_label("Per row").fill(str(nrow))
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)
        h, w, _ = served_card(base, "digits").image_shape
        n = int(page.get_by_label("Images (n)").input_value())
        assert grid_size(page) == imaging.grid_size(n, (h, w), nrow)
        assert get(curl_url(page), TOKEN) == (200, grid_bytes(page))

        expect(page.locator("#curl")).not_to_contain_text(TOKEN)
        assert TOKEN not in page.content()  # the password field's value is a property, never markup
        stored = page.evaluate("() => localStorage.length + sessionStorage.length + document.cookie.length")
        assert stored == 0
        assert page.context.cookies() == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "playground-token.png", full_page=True)


def test_docs_render_offline_under_their_csp(models_dir: Path, tmp_path: Path, browser: Browser) -> None:
    # Every request that leaves 127.0.0.1 is aborted, as on an offline network; CSP violations are logged
    # to the console as errors.
    with serve(models_dir, tmp_path / "service.log") as base:
        context = browser.new_context()
        outside: list[str] = []
        context.route(
            re.compile(r"^(?!http://127\.0\.0\.1:).*"),
            lambda route: (outside.append(route.request.url), route.abort()),
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.goto(base + "/docs")
        expect(page.locator(".opblock-summary-path", has_text="/generate").first).to_be_visible()
        expect(page.locator(".opblock-summary-path", has_text="/dataset").first).to_be_visible()
        context.close()
    assert outside == []
    assert not [e for e in console_errors if "Content Security Policy" in e or "Refused" in e], console_errors


def test_style_code_sliders_and_the_traverse_grid(models_dir: Path, tmp_path: Path, open_page) -> None:
    write_version(models_dir, "info", 1, num_codes=2)  # slant in [-2, 2], c1 in [-1, 1]
    with serve(models_dir, tmp_path / "service.log", DEFAULT_MODEL="info") as base:
        page = open_page(base)
        expect(page.locator("#model option")).to_have_count(2)
        codes_box = page.get_by_role("group", name="Style codes")
        expect(codes_box).to_be_visible()
        sliders = page.get_by_role("slider")
        expect(sliders).to_have_count(2)
        expect(page.get_by_role("slider", name="slant")).to_have_attribute("min", "-2")
        expect(page.locator("#card")).to_contain_text("slant [-2, 2], c1 [-1, 1]")

        page.get_by_label("Class", exact=True).select_option("7")
        page.get_by_label("Images (n)").fill("4")
        page.get_by_label("Seed", exact=True).fill("3")
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)
        from_seeds = grid_bytes(page)
        assert "codes=" not in curl_url(page)  # unchecked: each image's codes follow its seed

        # Fixed codes: the sliders' values go on the wire, and the grid is the API's for those codes.
        page.get_by_label("Set the codes for all images").check()
        page.get_by_role("slider", name="slant").press("Home")
        page.get_by_role("slider", name="c1").press("End")
        expect(page.locator("#code-sliders output").first).to_have_text("-2.00")
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)
        assert "codes=-2%2C1" in curl_url(page)
        fixed = grid_bytes(page)
        assert get(curl_url(page)) == (200, fixed) and fixed != from_seeds
        body = {"label": 7, "n": 4, "seed": 3, "model": "info", "codes": [-2, 1]}
        with urllib.request.urlopen(
            urllib.request.Request(
                base + "/generate", json.dumps(body).encode(), {"content-type": "application/json"}
            ),
            timeout=10,
        ) as response:
            assert response.read() == fixed

        # Traverse: one row per seed (n = 4), one column per step, slant swept and c1 at the slider's 1.
        page.get_by_label("Traverse steps").fill("5")
        page.get_by_role("button", name="Traverse slant").click()
        wait_for_grid(page)
        h, w, _ = served_card(base, "info").image_shape
        assert grid_size(page) == imaging.grid_size(4 * 5, (h, w), 5)
        url = curl_url(page)
        assert "traverse=slant" in url and "steps=5" in url and "codes=-2%2C1" in url
        assert get(url) == (200, grid_bytes(page))
        expect(page.locator("#caption")).to_contain_text("4 seeds × 5 steps of slant")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "playground-codes.png", full_page=True)

        # The service's refusal, in words: 4 x 300 images is over MAX_N.
        page.get_by_label("Traverse steps").fill("300")
        page.get_by_role("button", name="Traverse c1").click()
        error = page.get_by_role("alert")
        expect(error).to_contain_text("Error 422")
        expect(error).to_contain_text(api_detail(curl_url(page)))
        expect(error).to_contain_text("traverse.steps")

        # A model without codes has no sliders, and Generate after a traversal is a plain grid again.
        page.get_by_label("Model", exact=True).select_option("digits")
        expect(codes_box).to_be_hidden()
        page.get_by_role("button", name="Generate").click()
        wait_for_grid(page)
        assert "traverse" not in curl_url(page) and "codes" not in curl_url(page)
        assert grid_size(page) == imaging.grid_size(4, (h, w))


def test_the_readme_screenshot_script_draws_the_live_page(tmp_path: Path) -> None:
    # scripts/playground-screenshot made docs/playground.png; it must keep working against today's page.
    if find_chromium() is None:
        pytest.skip("no Chromium")
    out = tmp_path / "playground.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "playground-screenshot"), "--out", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    from PIL import Image

    with Image.open(out) as image:
        assert image.width == 1100 and image.height > 900  # the whole page, card and quality included
