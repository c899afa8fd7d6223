"""The browsable API, in a real browser: /docs lists every route, and "Try it out" gets the model's answer.

Headless Chromium loads the page from a running server; the page's assets
come from that server alone (from the installed swagger-ui-py).
"""

import orjson
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from support import running_server

SUMS = ["--replicas", "0", "--plugin", "sums=fixture_plugins.behaving:Declared"]


@pytest.fixture(scope="module")
def server():
    with running_server(*SUMS) as server:
        yield server


def wait(browser, condition, timeout: float = 30):
    return WebDriverWait(browser, timeout).until(condition)


def open_page(browser, url: str) -> None:
    browser.get(url)
    wait(browser, shown.presence_of_all_elements_located((By.CSS_SELECTOR, ".opblock")))


def try_it_out(browser, operation_id: str) -> tuple[str, str]:
    """Expand an operation, press "Try it out" then "Execute", as a person would: (status, body) shown."""
    block = wait(browser, shown.presence_of_element_located((By.CSS_SELECTOR, f"[id$='-{operation_id}']")))
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait(browser, shown.element_to_be_clickable((By.CSS_SELECTOR, f"[id$='-{operation_id}'] .try-out__btn"))).click()
    wait(browser, shown.element_to_be_clickable((By.CSS_SELECTOR, f"[id$='-{operation_id}'] .execute"))).click()
    status = wait(browser, shown.visibility_of_element_located(
        (By.CSS_SELECTOR, f"[id$='-{operation_id}'] .live-responses-table tr.response .response-col_status")))
    body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
    return status.text.strip(), body.text


def test_the_page_lists_every_route(server, browser):
    open_page(browser, server.url + "/docs")
    shown_paths = {element.get_attribute("data-path")
                   for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert shown_paths == set(requests.get(server.url + "/openapi.json", timeout=30).json()["paths"])
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded


def test_try_it_out_on_v1_predict_shows_the_prediction(server, browser):
    open_page(browser, server.url + "/docs")
    status, body = try_it_out(browser, "v1Predict")
    assert status == "200", body
    assert orjson.loads(body) == {"predictions": [3.0, 7.0]}  # the document's example: [[1, 2], [3, 4]] summed


def test_try_it_out_on_v2_infer_with_the_models_declared_input(server, browser):
    open_page(browser, server.url + "/v2/models/sums/docs")
    status, body = try_it_out(browser, "v2ModelInfer")
    assert status == "200", body
    answer = orjson.loads(body)
    # The example is one row of the declared x (FP32, [-1, 3]), each value 0.5.
    assert answer["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [1], "data": [1.5]}]
