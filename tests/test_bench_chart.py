"""bench/peers/chart.py, the chart compare.py writes beside its table: from figures made up here (no server, no
benchmark), an SVG whose text names every server and case and AlexNet's ONNX Runtime limit; and the recorded run
that docs/operating.md's chart comes from still parses into every row of its table."""

import importlib.util
import sys
import xml.etree.ElementTree as ElementTree

import pytest
from support import ROOT

# Loaded from its file, as compare.py's `peers.chart` and as the script it also is, without putting bench/ on the
# suite's sys.path (bench/ holds modules named workers.py, steps.py, ...).
SPEC = importlib.util.spec_from_file_location("bench_peers_chart", ROOT / "bench" / "peers" / "chart.py")
assert SPEC and SPEC.loader
chart = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = chart  # dataclasses look their module up there
SPEC.loader.exec_module(chart)

ECHO, ALEXNET = "echo, V1 JSON {\"instances\": [[16 floats]]}", "AlexNet on ONNX Runtime, V2 binary, top-5 out"
SERVERS = {ECHO: ["modelhost (in-process, --replicas 0)", "KServe ModelServer (in-process)",
                  "bare Tornado handler (1 process)"],
           ALEXNET: ["modelhost (in-process, --max_batch_size 8)", "MLServer (default: 1 inference worker), base64"]}
CONCURRENCIES = {ECHO: (1, 8, 64), ALEXNET: (1,)}  # one c alone, as --quick runs AlexNet


def made_up():
    points = [chart.Point(case, server, c, rps=1000.0 / (1 + i) * c ** 0.5, p99_ms=0.2 * c * (1 + i))
              for case, servers in SERVERS.items() for i, server in enumerate(servers) for c in CONCURRENCIES[case]]
    return chart.Results("python bench/compare.py --quick", "2026-12-01 08:12 UTC", points,
                         limits={1: 122.0}, limit_case=ALEXNET, note=chart.note(1, 2))


@pytest.fixture(scope="module")
def svg(tmp_path_factory):
    return chart.write(made_up(), tmp_path_factory.mktemp("chart") / "nested" / "compare.svg")


def texts(svg) -> list[str]:
    """Every text element of the SVG, in document order."""
    return [(node.text or "").strip() for node in ElementTree.parse(svg).iter("{http://www.w3.org/2000/svg}text")]


def test_the_chart_is_an_svg_whose_legend_names_every_server_and_whose_panels_name_every_case(svg):
    assert ElementTree.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    found = texts(svg)
    for server in {server for servers in SERVERS.values() for server in servers}:
        assert found.count(server) == 1, f"{server!r} is not once in the legend: {found}"
    joined = " ".join(found)  # a long title is wrapped over several text elements
    for case in SERVERS:
        assert case in joined, f"no panel title {case!r}"
    assert "python bench/compare.py --quick, 2026-12-01 08:12 UTC" in found
    assert "ONNX Runtime alone, batch 1: 122 images/s" in found
    assert {"c=1", "c=8", "c=64"} <= set(found)


def test_the_same_figures_give_the_same_bytes(svg, tmp_path):
    """No date or random id in the file, so that a chart redrawn from the same run diffs as unchanged."""
    assert chart.write(made_up(), tmp_path / "again.svg").read_bytes() == svg.read_bytes()


def test_the_recorded_run_behind_the_docs_chart_parses_into_every_row_of_its_table():
    results = chart.from_table((ROOT / "bench" / "results" / "2026-12-01-grpc-logs-off.txt").read_text())
    assert (results.command, results.date) == ("python bench/compare.py", "2026-12-01 08:12 UTC")
    assert len(results.points) == 63  # "63 rows x 3 runs x 4 s"
    assert len({point.case for point in results.points}) == 7
    assert results.points[0] == chart.Point(ECHO, "modelhost (in-process, --replicas 0)", 1, 9343.0, 0.17)
    assert results.points[-1] == chart.Point(results.limit_case, "MLServer (default: 1 inference worker), base64", 8,
                                             86.0, 108.30)
    assert results.limits == {1: 122.0, 8: 281.0}
    assert results.note == "medians of 3 runs of 4 s"
