"""The HTML report: self-contained, sections follow their inputs, plots embedded and non-empty;
and (slow) it renders in headless Chromium without errors."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from advgen.core.types import AdvgenError
from advgen.outputs import pipeline
from advgen.outputs.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    from test_exporters import make_attack_run

    base = tmp_path_factory.mktemp("report")
    clean = pipeline.run(tiny_model, 16, seed=1, out=base / "clean").out
    return clean, make_attack_run(clean, base / "attack", tiny_model.tokenizer)


@pytest.fixture(scope="module")
def attack_report(runs) -> Path:
    return build_report(runs[1], runs[1].parent / "attack-report.html")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def embedded_images(html: str) -> list[bytes]:
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    assert all(s.startswith("data:image/png;base64,") for s in srcs), "every image is an embedded PNG"
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def assert_self_contained(html: str) -> None:
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I), "no network references"
    assert "<script" not in html.lower() and "<link" not in html.lower()


def sections(html: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", html)


def test_plain_run_report(runs, tmp_path):
    out = build_report(runs[0], tmp_path / "r.html")
    html = out.read_text()
    assert_self_contained(html)
    assert sections(html) == ["Run", "Summary", "Logit-difference histograms"]
    imgs = embedded_images(html)
    assert len(imgs) == 1 and min(png_size(imgs[0])) > 100


def test_attack_run_report(attack_report):
    html = attack_report.read_text()
    assert_self_contained(html)
    assert sections(html) == ["Run", "Summary", "Failure modes", "Logit-difference histograms", "Duplicated-IO dose response",
                              "Confirmed adversarial examples", "Attention of the circuit&#x27;s heads"]
    imgs = embedded_images(html)
    # histograms + one dose-response plot + one figure per shown head (4 heads in the test circuit)
    assert len(imgs) == 1 + 1 + 4
    for data in imgs:
        w, h = png_size(data)
        assert w > 200 and h > 100 and len(data) > 5000
    assert "a1.h0" in html and "duplicate_io" in html and "distractor sentence" in html


def test_report_is_deterministic(runs, attack_report, tmp_path):
    again = build_report(runs[1], tmp_path / "again.html")
    assert again.read_bytes() == attack_report.read_bytes()


def test_discovery_and_claims_directory(runs, tmp_path):
    d = tmp_path / "disc"
    d.mkdir()
    html = runs[1].parent / "attack-report.html"
    png = embedded_images(html.read_text() if html.exists() else build_report(runs[1], html).read_text())[0]
    (d / "heads.png").write_bytes(png)
    (d / "discovery.json").write_text("{}")
    (d / "claims.md").write_text("# Claims\n\n| metric | ablation | F(C)/F(M) |\n|---|---|---|\n| LD | mean | 0.87 |\n")
    out = build_report(d, d / "report.html")
    text = out.read_text()
    assert sections(text) == ["Run", "Discovery heatmaps", "Claim check"]
    assert "<td>0.87</td>" in text and len(embedded_images(text)) == 1
    (d / "report.png").write_bytes(png)  # a screenshot of the report itself is not a discovery heatmap
    assert len(embedded_images(build_report(d, d / "report.html").read_text())) == 1


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(AdvgenError, match="not found"):
        build_report(tmp_path / "nope", tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvgenError, match="nothing to report"):
        build_report(tmp_path / "empty", tmp_path / "r.html")


def test_circuit_option_on_plain_run(runs, tmp_path):
    from advgen.circuits.format import make_circuit
    from advgen.core.types import Role

    path = make_circuit("mine", "tiny", {Role.NAME_MOVER: ["a1.h3"]}, 2, 4).save(tmp_path / "c.json")
    html = build_report(runs[0], tmp_path / "r.html", circuit=str(path)).read_text()
    assert "Attention of the circuit&#x27;s heads" in sections(html) and "attention a1.h3" in html
    assert len(embedded_images(html)) == 2
    bad = make_circuit("big", "gpt2", {Role.NAME_MOVER: ["a9.h9"]}).save(tmp_path / "big.json")
    with pytest.raises(AdvgenError, match="a9.h9"):
        build_report(runs[0], tmp_path / "r2.html", circuit=str(bad))


def test_cli_report(runs, tmp_path, capsys):
    from advgen.cli.main import main

    assert main(["report", str(runs[0]), "--out", str(tmp_path / "c.html"), "--no-attention"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "c.html").exists()
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "d.html")]) == 2


CHECK_JS = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const out = document.createElement('pre');
  out.id = 'advgen-check';
  out.textContent = JSON.stringify({errors: window.__errors, imgs: imgs, h2: document.querySelectorAll('h2').length});
  document.body.appendChild(out);
});
</script>"""


def _chromium(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180, cwd=cwd)


@pytest.mark.slow
def test_report_renders_in_chromium(attack_report):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package `chromium` (.ci/run does)")
    html = attack_report.read_text()
    n_imgs = len(embedded_images(html))
    # the checker is a copy with one inline script; the report itself stays script-free
    checker = attack_report.with_name(attack_report.stem + "-check.html")
    checker.write_text(html.replace("</body>", CHECK_JS + "</body>"))
    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", checker.as_uri()], attack_report.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="advgen-check">([^<]*)</pre>', res.stdout)
    assert m, "the page did not finish loading:\n" + res.stdout[-1000:]
    check = json.loads(m.group(1).replace("&quot;", '"'))
    assert check["errors"] == []
    assert check["h2"] == len(sections(html))
    assert len(check["imgs"]) == n_imgs
    assert all(ok and w > 100 and h > 50 for ok, w, h in check["imgs"]), check["imgs"]
    # a screenshot next to the report, and it is not blank
    shot = attack_report.with_suffix(".png")
    res = _chromium(["--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", attack_report.as_uri()], attack_report.parent)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from matplotlib.image import imread

    px = imread(str(shot))
    assert png_size(shot.read_bytes()) == (1280, 2400)
    assert px[..., :3].std() > 0.05, "screenshot is blank"
    assert len({tuple(p) for p in (px[::17, ::17, :3] * 255).astype(int).reshape(-1, 3).tolist()}) > 20
    checker.unlink()
