"""The HTML report: built by `snakemake --report`, opened in a headless browser, every figure checked.

:func:`check_report` is meant to be called on a directory where the workflow has run (the demo):

    >>> from test_report import check_report
    >>> check_report(workdir)            # builds results/report.html, raises AssertionError if bad

It checks that every PNG under ``results/`` is embedded in the report (the same bytes as on disk)
with a caption that rendered without reStructuredText errors, then opens the report in headless
Chromium (Debian's ``chromium``) and checks that the page renders and that the browser decodes
every embedded figure to a non-empty image.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)

# Appended to a copy of the report: decodes every embedded image in the page and records its size
# in the DOM, where --dump-dom can read it.
PROBE = """
<script>
window.addEventListener("load", function () {
  var out = document.createElement("div");
  out.id = "lymannet-probe";
  document.body.appendChild(out);
  Object.keys(results).forEach(function (key) {
    var entry = results[key];
    if (!(entry.mime_type || "").startsWith("image/")) { return; }
    var img = new Image();
    var row = document.createElement("span");
    row.setAttribute("data-key", key);
    row.setAttribute("data-width", "pending");
    out.appendChild(row);
    img.onload = function () { row.setAttribute("data-width", String(img.naturalWidth)); };
    img.onerror = function () { row.setAttribute("data-width", "error"); };
    img.src = entry.data_uri;
  });
});
</script>
"""


def chromium_executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def build_report(workdir: Path, report: str = "results/report.html", timeout: float = 600) -> Path:
    """Run ``snakemake --report`` in ``workdir`` (where the workflow has run)."""
    command = [
        "timeout",
        "-s",
        "KILL",
        str(int(timeout)),
        SNAKEMAKE,
        "--directory",
        str(workdir),
        "--report",
        report,
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert (
        result.returncode == 0
    ), f"snakemake --report failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return workdir / report


def embedded_results(html: str) -> dict[str, dict]:
    """The report's ``var results = {...}`` (one entry per file marked with report())."""
    match = re.search(r"var results = (\{.*?\});?\s*</script>", html, re.S)
    assert match, "no `var results = {...}` in the report: not a Snakemake 8/9 HTML report?"
    return json.loads(match.group(1))


def expected_figures(workdir: Path) -> list[str]:
    """Every PNG the workflow wrote under results/ (paths relative to the workdir)."""
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*.png"))


def browser_probe(report: Path, chromium: str, timeout: float = 120) -> tuple[str, dict[str, str]]:
    """Open a probed copy of the report headless; return the rendered text and {key: image width}."""
    with tempfile.TemporaryDirectory(prefix="lymannet-report-") as tmp:
        probed = Path(tmp) / "report.html"
        html = report.read_text()
        cut = html.rfind("</body>")  # the page's own; earlier ones sit inside JavaScript strings
        probed.write_text(html[:cut] + PROBE + html[cut:])
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp}/profile",
            "--virtual-time-budget=20000",
            "--dump-dom",
            probed.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0 and result.stdout, f"chromium failed: {result.stderr[-3000:]}"
        screenshot = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp}/profile",
            "--virtual-time-budget=20000",
            "--window-size=1400,1000",
            f"--screenshot={report.with_suffix('.png')}",
            report.as_uri(),
        ]
        subprocess.run(screenshot, capture_output=True, text=True, timeout=timeout)  # for a person to look at
    dom = result.stdout
    widths = dict(re.findall(r'<span data-key="([^"]+)" data-width="([^"]+)"', dom))
    body = dom[dom.find("<body") :]
    text = re.sub(
        r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S))
    )
    return text, widths


def check_report(
    workdir: str | Path,
    expected: list[str] | None = None,
    build: bool = True,
    report: str = "results/report.html",
    browser: bool = True,
) -> dict[str, int]:
    """Build (unless ``build=False``) and check the report of ``workdir``; return {figure: width in px}.

    ``expected``: the figures that must be in the report (default: every PNG under results/).
    """
    workdir = Path(workdir)
    path = build_report(workdir, report) if build else workdir / report
    html = path.read_text()
    results = embedded_results(html)
    expected = expected_figures(workdir) if expected is None else list(expected)
    expected = [name for name in expected if Path(name) != Path(report).with_suffix(".png")]
    missing = [name for name in expected if name not in results]
    assert not missing, f"figures missing from the report: {missing}; it has {sorted(results)}"
    for name in expected:
        entry = results[name]
        assert entry["mime_type"] == "image/png", (name, entry["mime_type"])
        payload = base64.b64decode(entry["data_uri"].split(",", 1)[1])
        assert payload == (workdir / name).read_bytes(), f"{name}: embedded image differs from the file"
        assert entry.get("caption", "").strip(), f"{name}: no caption"
    broken = [name for name, entry in results.items() if "system-message" in entry.get("caption", "")]
    assert not broken, f"captions with reStructuredText errors: {broken}"
    assert "system-message" not in html.split("var results")[0], "workflow description has RST errors"
    if not browser:
        return {name: -1 for name in expected}
    chromium = chromium_executable()
    assert chromium, "no chromium: apt-get install -y chromium"
    text, widths = browser_probe(path, chromium)
    assert "Snakemake Report" in text and "Results" in text, f"the report did not render: {text[:500]}"
    categories = {entry.get("category") for entry in results.values() if entry.get("category")}
    unrendered = [c for c in categories if c not in text]
    assert not unrendered, f"categories not shown in the rendered report: {unrendered}"
    bad = {
        name: widths.get(name)
        for name in expected
        if not str(widths.get(name, "")).isdigit() or int(widths[name]) < 100
    }
    assert not bad, f"figures the browser could not display: {bad}"
    return {name: int(widths[name]) for name in expected}


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_report_of_the_demo(demo_run):
    """The demo's report holds every figure the demo made, each decoded by the browser."""
    if chromium_executable() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    widths = check_report(demo_run)
    for kind in ("/scores/", "compare_", "simulated_examples", "resampled_z", "learning_curve", "/combos/"):
        assert any(kind in name for name in widths), kind


MINI_SNAKEFILE = """
report: "{repo}/workflow/report/workflow.rst"
config = {{"score": {{"dz_max": 0.05, "dv_max_kms": None, "target_class": "LBG", "min_lines": 1,
                      "c_th": 0.5, "threshold_grid": {{"start": 0, "stop": 1, "n": 51}}}}}}
RUNS = [("initial", "initial"), ("classic", "data_to_train_1")]
rule all:
    input: "results/summary.md"
rule score:
    input: prediction="pred.fits"
    output:
        score_json="results/scores/{{model}}/{{combo}}/{{testset}}.json",
        curve_csv="results/scores/{{model}}/{{combo}}/{{testset}}_curve.csv",
        figure=report("results/scores/{{model}}/{{combo}}/{{testset}}.png", caption="{repo}/workflow/report/score.rst",
                      category="4. Scores", subcategory="{{testset}}"),
        pe_figure=report("results/scores/{{model}}/{{combo}}/{{testset}}_pe.png",
                         caption="{repo}/workflow/report/pe_curve.rst", category="4. Scores", subcategory="{{testset}}"),
    log: "logs/score/{{model}}/{{combo}}/{{testset}}.log"
    params: options=config["score"]
    script: "{repo}/workflow/scripts/score.py"
rule compare:
    input:
        scores=[f"results/scores/{{m}}/{{c}}/test_z3.json" for m, c in RUNS],
        curves=[f"results/scores/{{m}}/{{c}}/test_z3_curve.csv" for m, c in RUNS],
        models=[],
    output:
        summary_csv="results/summary.csv",
        summary_md=report("results/summary.md", caption="{repo}/workflow/report/summary.rst", category="5. Comparison"),
        figures=report(["results/plots/compare_test_z3.png"], caption="{repo}/workflow/report/compare.rst",
                       category="5. Comparison"),
        combos_png=report("results/plots/combos.png", caption="{repo}/workflow/report/combos.rst",
                          category="5. Comparison"),
    log: "logs/compare.log"
    params: testsets=["test_z3"]
    script: "{repo}/workflow/scripts/compare.py"
"""


@pytest.mark.slow
def test_report_of_a_small_workflow(tmp_path):
    """The score/compare scripts and their captions through real snakemake + report + browser."""
    if chromium_executable() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    sys.path.insert(0, str(Path(__file__).parent))
    from test_score import write_hand_catalogue

    write_hand_catalogue(tmp_path / "pred.fits")
    (tmp_path / "Snakefile").write_text(MINI_SNAKEFILE.format(repo=REPO))
    run = subprocess.run(
        ["timeout", "-s", "KILL", "600", SNAKEMAKE, "--cores", "1", "--directory", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    widths = check_report(tmp_path)
    assert sorted(widths) == [
        "results/plots/combos.png",
        "results/plots/compare_test_z3.png",
        "results/scores/classic/data_to_train_1/test_z3.png",
        "results/scores/classic/data_to_train_1/test_z3_pe.png",
        "results/scores/initial/initial/test_z3.png",
        "results/scores/initial/initial/test_z3_pe.png",
    ]
