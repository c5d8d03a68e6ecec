"""JupyterLab loads in a real browser with the jobmagic frontend extension active."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

PLUGIN_ID = "jobmagic:plugin"  # the frontend keeps this id for its main plugin


def test_jupyterlab_page_activates_the_jobmagic_plugin(
    lab_server: LabServer, browser_page: Page
) -> None:
    page_errors: list[str] = []
    browser_page.on("pageerror", lambda error: page_errors.append(str(error)))
    scripts: list[str] = []
    browser_page.on(
        "response",
        lambda response: (
            scripts.append(response.url)
            if "/lab/extensions/jobmagic/static/" in response.url and response.ok
            else None
        ),
    )

    browser_page.goto(f"{lab_server.url}lab?token={lab_server.token}")
    browser_page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    # window.jupyterapp exists because the server runs with expose_app_in_browser.
    browser_page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    state = browser_page.evaluate(
        """async (id) => {
            const app = window.jupyterapp;
            await app.restored;
            return {
                registered: app.hasPlugin(id),
                activated: app.isPluginActivated(id),
                plugins: app.listPlugins().filter(p => p.startsWith('jobmagic')),
            };
        }""",
        PLUGIN_ID,
    )

    assert state["registered"], state
    assert state["activated"], state
    assert any("/remoteEntry." in url for url in scripts), scripts
    assert [e for e in page_errors if "jobmagic" in e] == []
