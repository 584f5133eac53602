"""The HTML report: verdict first, self-contained, sections follow their inputs, plots embedded and non-empty;
and (slow) it renders in headless Chromium, offline, with the verdict panel and the circuitsvis view."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from rundirs import make_attack_run

from advgen.core.types import AdvgenError
from advgen.outputs import pipeline
from advgen.outputs.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]  # nothing resolves: the page must render offline


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report")
    clean = pipeline.run(tiny_model, 16, seed=1, out=base / "clean").out
    return clean, make_attack_run(clean, base / "attack", tiny_model.tokenizer)


@pytest.fixture(scope="module")
def attack_report(runs) -> Path:
    return build_report(runs[1], runs[1].parent / "attack-report.html")


@pytest.fixture()
def heatmap_png() -> bytes:
    """A PNG of its own (not another test's output) standing in for a discovery heatmap."""
    import numpy as np

    from advgen.outputs import plots

    fig = plots.attention_pair("a0.h0", "name_mover", [("p", ["a", "b", "c"], np.eye(3))])
    return base64.b64decode(plots.png_b64(fig))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def embedded_images(html: str) -> list[bytes]:
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    assert all(s.startswith("data:image/png;base64,") for s in srcs), "every image is an embedded PNG"
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def assert_self_contained(html: str) -> None:
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I), "no network references"
    assert "<link" not in html.lower() and not re.search(r"<script[^>]*\ssrc=", html, re.I), "scripts are inline"
    assert "unpkg.com" not in html and "cdn.jsdelivr" not in html


def sections(html: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", html)


def verdict_panel(html: str) -> str:
    m = re.search(r"<section id='verdict'>(.*?)</section>", html, re.S)
    assert m, "the report opens with a verdict panel"
    assert html.index("<section id='verdict'>") < html.index("<h2>Run</h2>"), "the verdict comes first"
    return m.group(1)


def test_plain_run_report(runs, tmp_path):
    out = build_report(runs[0], tmp_path / "r.html")
    html = out.read_text()
    assert_self_contained(html)
    assert "<script" not in html, "no circuit, no interactive view, no script"
    assert sections(html) == ["Verdict", "Run", "Summary", "Logit-difference histograms"]
    panel = verdict_panel(html)
    rows = [json.loads(x) for x in (runs[0] / "results.jsonl").read_text().splitlines()]
    acc = sum(r["logit_diff"] > 0 for r in rows) / len(rows)
    assert f"IO above S in <b>{100 * acc:.1f} %</b>" in panel
    assert "<dt>S &gt; IO</dt>" in panel and "<dt>verdict</dt>" not in panel, "the legend defines this run's columns only"
    imgs = embedded_images(html)
    assert len(imgs) == 1 and min(png_size(imgs[0])) > 100
    summary = json.loads((runs[0] / "summary.json").read_text())
    for order, g in summary["by_order"].items():  # the same numbers as summary.json's breakdown
        ci = g["logit_diff_ci95"]
        assert (
            f'<td>{order}</td><td class="num">{g["n"]}</td><td>{g["mean_logit_diff"]:.3f} [{ci["low"]:.3f}, '
            f"{ci['high']:.3f}]</td>" in html
        )
    assert "Clean prompts by template" in html and all(f"<td>{t}</td>" in html for t in summary["by_template"])


def test_attack_run_report(attack_report):
    html = attack_report.read_text()
    assert_self_contained(html)
    assert sections(html) == [
        "Verdict",
        "Run",
        "Summary",
        "Failure modes",
        "Logit-difference histograms",
        "Duplicated-IO dose response",
        "Confirmed adversarial examples",
        "Attention of the circuit&#x27;s heads",
        "Interactive attention (circuitsvis)",
    ]
    imgs = embedded_images(html)
    # histograms + one dose-response plot + one figure per shown head (4 heads in the test circuit)
    assert len(imgs) == 1 + 1 + 4
    for data in imgs:
        w, h = png_size(data)
        assert w > 200 and h > 100 and len(data) > 5000
    assert "a1.h0" in html and "duplicate_io" in html and "distractor sentence" in html


def test_verdict_panel_reads_summary(attack_report):
    panel = verdict_panel(attack_report.read_text())
    assert "<span class='v ok'>confirmed</span>" in panel
    assert "<span class='v bad'>falsified (opposite sign)</span>" in panel
    assert "-1.30 [-1.50, -1.10]" in panel and "+0.80 [+0.50, +1.10]" in panel
    assert "circuit-guided 15.0 vs random 5.0" in panel and "ratio 3.00x" in panel  # raw, beside the headline
    assert "circuit-guided 10.0 breaks whose control does not break vs random 5.0" in panel and "<b>2.00x</b>" in panel
    assert (
        panel.index("<b>Attributable yield</b>") < panel.index("<b>Raw yield</b>") and "2 breaks shared by their control" in panel
    )
    for term in (
        "LD",
        "S &gt; IO",
        "explained (of breaks)",
        "random sample / search",
        "attributable yield",
        "raw yield",
        "yield",
        "verdict",
    ):
        assert f"<dt>{term}</dt>" in panel, term


def test_verdict_panel_falls_back_to_modes_json(runs, tiny_model, tmp_path):
    """An older run directory (no verdicts or yield in summary.json) gets the same panel from modes.json / baseline.json."""
    old = make_attack_run(runs[0], tmp_path / "old", tiny_model.tokenizer, legacy=True)
    assert "yield" not in json.loads((old / "summary.json").read_text())
    panel = verdict_panel(build_report(old, tmp_path / "old.html", attention=False).read_text())
    assert "<span class='v bad'>falsified (opposite sign)</span>" in panel and "+0.80 [+0.50, +1.10]" in panel
    assert "circuit-guided 15.0 vs random 5.0" in panel and "ratio 3.00x" in panel and "Attributable yield: not recorded" in panel
    (old / "modes.json").unlink()
    (old / "baseline.json").unlink()
    panel = verdict_panel(build_report(old, tmp_path / "old2.html", attention=False).read_text())
    assert "not recorded" in panel


def test_dose_table_labels_sample_and_search(attack_report):
    html = attack_report.read_text()
    dose = html[html.index("Duplicated-IO dose response") : html.index("Confirmed adversarial examples")]
    assert "<th>subset</th>" in dose and "<td>random sample</td>" in dose and "<td>search</td>" in dose
    assert "Plotted: the random sample rows only." in dose
    modes = html[html.index("<h2>Failure modes</h2>") : html.index("Logit-difference histograms")]
    assert "<td>clean partners</td>" in modes and "<td>search</td>" in modes


def test_interactive_attention_view_is_inline(attack_report):
    html = attack_report.read_text()
    view = html[html.index("Interactive attention (circuitsvis)") :]
    assert "circuitsvis" in view and "var CircuitsVis" in view, "the circuitsvis bundle is inlined"
    assert view.count("CircuitsVis.render(") == 2, "one view per example prompt"
    assert re.findall(r'<div id="(advgen-cv-\d)"', view) == ["advgen-cv-0", "advgen-cv-1"]
    assert "sourceMappingURL" not in view


def test_report_is_deterministic(runs, attack_report, tmp_path):
    again = build_report(runs[1], tmp_path / "again.html")
    assert again.read_bytes() == attack_report.read_bytes()


def test_discovery_and_claims_directory(tmp_path, heatmap_png):
    d = tmp_path / "disc"
    d.mkdir()
    (d / "patching.png").write_bytes(heatmap_png)
    versions = {"python": "3.11.7", "torch": "2.13.0+cpu"}
    (d / "discovery.json").write_text(
        json.dumps(
            {
                "model": "reference",
                "model_source": "/some/dir",
                "settings": {"seed": 7},
                "command": "advgen discover --n 20",
                "versions": versions,
                "roles_found": ["s_inhibition"],
                "roles_missing": ["name_mover"],
                "heads": {"a0.h1": {}},
            }
        )
    )
    (d / "claims.md").write_text(
        "# Claims\n\n| metric | ablation | F(C)/F(M) |\n|---|---|---|\n| LD | mean | 0.87 |\n"
        "| KL(model \\|\\| circuit) | mean | 0.5 |\n"
    )
    text = build_report(d, d / "report.html").read_text()
    assert sections(text)[:3] == ["Verdict", "Run", "Discovery heatmaps"] and "Claim check" in sections(text)
    assert "Discovery kept <b>1 heads</b>" in text and "roles found: <b>s_inhibition</b>" in text
    run = text[text.index("<h2>Run</h2>") : text.index("<h2>Discovery heatmaps</h2>")]
    assert "reference (/some/dir)" in run and "<td>7</td>" in run and "torch 2.13.0+cpu" in run
    assert "?" not in run, "no unknown metadata"
    assert "<td>0.87</td>" in text and len(embedded_images(text)) == 1
    assert "<td>KL(model || circuit)</td><td>mean</td><td>0.5</td>" in text, "an escaped pipe stays inside its cell"
    (d / "report.png").write_bytes(heatmap_png)  # a screenshot of the report itself is not a discovery heatmap
    assert len(embedded_images(build_report(d, d / "report.html").read_text())) == 1


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(AdvgenError, match="not found"):
        build_report(tmp_path / "nope", tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvgenError, match="nothing to report"):
        build_report(tmp_path / "empty", tmp_path / "r.html")


def test_generate_only_directory_is_refused(tiny_model, tmp_path, capsys):
    """`advgen generate` output holds prompts, not measurements: refused (exit 2), naming what it holds and what to run."""
    from advgen.cli.main import main

    ps = pipeline.generate(tiny_model.tokenizer, 4, 0)
    pipeline.write_prompts(tmp_path / "gen", ps, {"model": "tiny", "seed": 0})
    with pytest.raises(AdvgenError, match=r"nothing to report.*manifest.json, prompts.jsonl.*advgen validate"):
        build_report(tmp_path / "gen", tmp_path / "r.html")
    assert main(["report", str(tmp_path / "gen"), "--out", str(tmp_path / "r.html")]) == 2
    assert "prompts.jsonl" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_circuit_option_on_plain_run(runs, tmp_path):
    from advgen.circuits.format import make_circuit
    from advgen.core.types import Role

    path = make_circuit("mine", "tiny", {Role.NAME_MOVER: ["a1.h3"]}, 2, 4).save(tmp_path / "c.json")
    html = build_report(runs[0], tmp_path / "r.html", circuit=str(path)).read_text()
    assert "Attention of the circuit&#x27;s heads" in sections(html) and "attention a1.h3" in html
    assert "Interactive attention (circuitsvis)" in sections(html)
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
window.addEventListener('load', () => setTimeout(() => {
  const imgs = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const v = document.getElementById('verdict').getBoundingClientRect();
  const cv = Array.from(document.querySelectorAll('div.circuitsvis'))
    .map(d => [d.id, d.querySelectorAll('*').length, d.innerText]);
  const out = document.createElement('pre');
  out.id = 'advgen-check';
  out.textContent = JSON.stringify({errors: window.__errors, imgs: imgs,
    h2: document.querySelectorAll('body > section > h2').length,
    verdict: [v.top, v.height, window.innerHeight, document.getElementById('verdict').innerText], cv: cv});
  document.body.appendChild(out);
}, 1000));
</script>"""


def _chromium(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=cwd,
        )


@pytest.mark.slow
def test_report_renders_in_chromium(attack_report):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package `chromium` (.ci/run does)")
    html = attack_report.read_text()
    n_imgs = len(embedded_images(html))
    # the checker is a copy with one more inline script that reports what the page shows
    checker = attack_report.with_name(attack_report.stem + "-check.html")
    checker.write_text(html.replace("</body>", CHECK_JS + "</body>"))
    res = _chromium(
        ["--window-size=1280,1000", "--virtual-time-budget=8000", "--dump-dom", checker.as_uri()], attack_report.parent
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="advgen-check">([^<]*)</pre>', res.stdout)
    assert m, "the page did not finish loading:\n" + res.stdout[-1000:]
    check = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert check["errors"] == []
    assert check["h2"] == len(sections(html))
    assert len(check["imgs"]) == n_imgs
    assert all(ok and w > 100 and h > 50 for ok, w, h in check["imgs"]), check["imgs"]
    top, height, screen, text = check["verdict"]
    assert top < 200 and top + height <= screen, "the verdict panel is on the first screen"
    assert "falsified (opposite sign)" in text and "confirmed" in text
    assert text.index("Attributable yield") < text.index("Raw yield"), "the attributable yield is the headline, raw beside it"
    assert "ratio 2.00x" in text and "ratio 3.00x" in text
    # circuitsvis rendered offline (no host resolves): each view has its head selector and the heads' names
    assert [c[0] for c in check["cv"]] == ["advgen-cv-0", "advgen-cv-1"]
    for _, n_nodes, text in check["cv"]:
        assert n_nodes > 20 and "Head Selector" in text and "a1.h0 name_mover" in text, text[:300]
    checker.unlink()
    # a screenshot next to the report, and it is not blank
    shot = attack_report.with_suffix(".png")
    res = _chromium(
        ["--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", attack_report.as_uri()], attack_report.parent
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from matplotlib.image import imread

    px = imread(str(shot))
    assert png_size(shot.read_bytes()) == (1280, 2400)
    assert px[..., :3].std() > 0.05, "screenshot is blank"
    assert len({tuple(p) for p in (px[::17, ::17, :3] * 255).astype(int).reshape(-1, 3).tolist()}) > 20


def test_the_run_table_lists_every_circuit_node_mlps_included(tmp_path):
    """Issue 22: the report names a circuit's MLP nodes, not only its heads; a broken circuit file is said, not hidden:
    circuit.json is read through its record (issue 21), so the report names the file and the field and stops."""
    from advgen.circuits.format import Circuit
    from advgen.outputs.rundata import read_circuit
    from advgen.outputs.runinfo import circuit_label

    doc = {
        "format": "advgen-circuit/2",
        "name": "mixed",
        "model": "m",
        "heads": [{"head": "a1.h2", "role": "name_mover", "positions": ["END"]}],
        "mlps": [{"node": "m3", "positions": ["END"]}, {"node": "m0"}],
    }
    assert circuit_label(Circuit.from_dict(doc, "c.json")) == "mixed: 1 heads (a1.h2 name_mover @END); MLP nodes m0 @END, m3 @END"
    assert circuit_label(None) == "none" and read_circuit(tmp_path) is None
    (tmp_path / "circuit.json").write_text(json.dumps({"name": "bad", "heads": [{"head": "zz"}]}))
    with pytest.raises(AdvgenError, match=re.escape(f"{tmp_path / 'circuit.json'}: heads[0]")):
        read_circuit(tmp_path)
