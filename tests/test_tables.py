"""Tables: rich and coloured on a terminal, exactly ``render``'s plain text when piped."""

from __future__ import annotations

import json

import numpy as np
import pytest

import czmodel
from czmodel.cli import table as T
from czmodel.cli.main import main

HEAD = ["layer", "#weights", "kept %", "rate"]
ROWS = [["fc1.weight", 235200, 8.0, "36.1x"], ["fc2.weight", 30000, 0.004, "30.2x"],
        ["total", 265200, 9.5, "35.0x"]]


@pytest.fixture
def terminal(monkeypatch):
    """Fake a terminal on stdout (the one check the CLI makes)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(T, "stdout_is_terminal", lambda: True)


def test_piped_output_is_the_plain_render(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert T.stdout_is_terminal() is False      # pytest captures stdout
    T.print_table(HEAD, ROWS, "lrrr", title="ignored when piped", total_row=True)
    assert capsys.readouterr().out == T.render(HEAD, ROWS, "lrrr") + "\n"


def test_terminal_output_is_rich_and_coloured(capsys, terminal):
    T.print_table(HEAD, ROWS, "lrrr", total_row=True)
    out = capsys.readouterr().out
    assert "\x1b[" in out                       # ANSI colour / bold codes
    for cell in ("fc1.weight", "235,200", "8.00", "0.004", "36.1x", "total"):
        assert cell in out                      # numbers formatted as render's _fmt
    assert out != T.render(HEAD, ROWS, "lrrr") + "\n"


def test_no_color_gives_plain_text_on_a_terminal(capsys, terminal, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    T.print_table(HEAD, ROWS, "lrrr")
    assert capsys.readouterr().out == T.render(HEAD, ROWS, "lrrr") + "\n"


def test_cells_are_not_rich_markup(capsys, terminal):
    T.print_table(["enc"], [["relidx[dense(data: u8[3])]"]])
    assert "relidx[dense(data: u8[3])]" in capsys.readouterr().out


@pytest.fixture
def compressed(tmp_path):
    from czmodel.compress.pipeline import save

    w = np.random.default_rng(0).laplace(size=(64, 64)).astype(np.float32)
    p = tmp_path / "r.cz"
    save(p, {"w": w, "b": np.ones(64, np.float32)},
         {"default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                      "entropy": "huffman"}, "layers": {"b": None}})
    return p


def test_cz_info_and_report_plain_when_piped(compressed, capsys):
    from czmodel.compress.report import build_report

    assert main(["info", str(compressed), "--report"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    rep = build_report(compressed)
    assert rep.to_text() in out                 # the report block is exactly to_text()
    rep.print()
    assert capsys.readouterr().out == rep.to_text() + "\n"


def test_cz_info_and_report_rich_on_a_terminal(compressed, capsys, terminal):
    assert main(["info", str(compressed), "--report"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" in out and "(P+Q+H)" in out and "total" in out   # headers may wrap
    from czmodel.compress.report import build_report

    last = f"{build_report(compressed).totals().rate_pqh:.1f}x"     # the rightmost cell
    assert last in out.split("total")[-1]                            # not cropped
    assert "tensors," in out                    # the summary line follows the table
    assert main(["info", str(compressed), "--json"]) == 0     # --json never coloured
    json.loads(capsys.readouterr().out)


def test_bench_result_plain_equals_render(capsys):
    from czmodel.cli import bench

    r = {"timing": {"czmodel": {"median_s": 1e-4, "min_s": 9e-5, "max_s": 2e-4, "samples": 7,
                                "throughput_per_s": 1e4}},
         "backend": "c", "threads": 1, "batch": 1, "load_s": 0.01, "resident_bytes": 2048}
    bench.print_result(r)
    assert capsys.readouterr().out == bench.render(r) + "\n"


def test_verify_json(compressed, tmp_path, capsys):
    assert main(["verify", "--json", str(compressed)]) == 0
    assert json.loads(capsys.readouterr().out) == {"file": str(compressed), "ok": True}
    bad = tmp_path / "bad.cz"
    bad.write_bytes(b"not a cz file at all, definitely not")
    assert main(["verify", "--json", str(bad)]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is False and res["error"] == "FormatError" and res["file"] == str(bad)
    assert main(["verify", "--json", str(tmp_path / "missing.cz")]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    czmodel.verify(compressed)
