"""Progress bars (czmodel.progress): drawn on stderr when forced (CZ_PROGRESS=1) or on a
terminal, silent when stderr is piped (pytest's default), and never changing results."""

from __future__ import annotations

import io

import numpy as np
import pytest

from czmodel import progress as P
from czmodel.compress import calibrate, kmeans
from czmodel.compress.pipeline import save

CONFIG = {"default": {"prune": {"sparsity": 0.8}, "quantize": {"method": "kmeans", "bits": 4},
                      "entropy": "huffman"},
          "layers": {"*.bias": None}}


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = {}
    for i, (o, n) in enumerate(((64, 32), (48, 64), (10, 48))):
        w[f"fc{i}.weight"] = rng.laplace(size=(o, n)).astype(np.float32)
        w[f"fc{i}.bias"] = rng.standard_normal(o).astype(np.float32)
    return w


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("CZ_PROGRESS", raising=False)


def test_compression_draws_named_bars_when_forced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CZ_PROGRESS", "1")
    rep = save(tmp_path / "bar.cz", _model(), CONFIG)
    cap = capsys.readouterr()
    assert "compressing" in cap.err and "entropy coding" in cap.err
    assert "/6" in cap.err                      # "done/total" of the 6 tensors
    assert "\x1b[" in cap.err                   # drawn by rich (cursor control, colour)
    assert cap.out == ""                        # stdout untouched
    assert P._shared is None                    # the live display is closed
    assert rep.rows and rep.file_bytes > 0


def test_piped_stderr_prints_nothing_and_results_are_identical(tmp_path, monkeypatch, capsys,
                                                                no_env):
    plain = save(tmp_path / "plain.cz", _model(), CONFIG)
    assert capsys.readouterr().err == ""        # pytest pipes stderr: no bar
    monkeypatch.setenv("CZ_PROGRESS", "1")
    barred = save(tmp_path / "bar.cz", _model(), CONFIG)
    assert capsys.readouterr().err != ""
    assert (tmp_path / "plain.cz").read_bytes() == (tmp_path / "bar.cz").read_bytes()
    assert plain.to_dict() == barred.to_dict()


def test_enabled_rules(monkeypatch, no_env):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert P.enabled() is False                 # pytest: stderr is not a terminal
    monkeypatch.setattr("sys.stderr", Tty())
    assert P.enabled() is True
    monkeypatch.setenv("CZ_PROGRESS", "0")
    assert P.enabled() is False
    assert P.enabled(True) is True              # an explicit argument wins
    monkeypatch.setenv("CZ_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert P.enabled() is True and P.enabled(False) is False
    assert isinstance(P.progress([1], enable=False), P._NoBar)


def test_nested_bars_share_one_display_and_close_on_error(monkeypatch, capsys):
    monkeypatch.setenv("CZ_PROGRESS", "1")
    seen = []
    with P.progress(range(3), desc="outer step") as outer:
        for i in outer:
            with P.progress_task(2, desc=f"inner step {i}") as inner:
                inner.advance(2)
            seen.append(i)
            print("line", i)                    # stdout is piped: not redirected
    assert seen == [0, 1, 2] and P._shared is None
    cap = capsys.readouterr()
    assert "outer step" in cap.err and "inner step 2" in cap.err
    assert cap.out == "line 0\nline 1\nline 2\n"
    with pytest.raises(ValueError), P.progress(range(5), desc="failing") as bar:
        for i in bar:
            if i == 2:
                raise ValueError("boom")
    assert P._shared is None and P._users == 0  # closed at once, not when collected


def test_kmeans_per_channel_bar_keeps_results(monkeypatch, capsys, no_env):
    w = np.random.default_rng(1).standard_normal((40, 50)).astype(np.float32)
    ref = kmeans.share_weights(w, 4, per_channel=True)
    monkeypatch.setenv("CZ_PROGRESS", "1")
    monkeypatch.setattr(kmeans, "_BAR_MIN_WEIGHTS", 0)
    got = kmeans.share_weights(w, 4, per_channel=True)
    assert "k-means per channel" in capsys.readouterr().err
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_array_equal(ref[1], got[1])


def test_calibration_ranges_bar_keeps_results(monkeypatch, capsys):
    rng = np.random.default_rng(2)
    cals = {}
    for k in ("a", "b", "c"):
        cals[k] = calibrate.HistogramCalibrator(num_bins=256)
        cals[k].update(rng.standard_normal(1000))
    monkeypatch.setenv("CZ_PROGRESS", "1")
    got = calibrate.compute_ranges(cals, "entropy")
    assert "calibration ranges (entropy)" in capsys.readouterr().err
    assert got == {k: c.compute("entropy") for k, c in cals.items()}


def test_text_fallback_bar(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    assert list(P._TextBar([1, 2, 3], None, "epoch")) == [1, 2, 3]
    assert "epoch [" in buf.getvalue() and "3/3" in buf.getvalue()
