"""README code blocks run as tests: the examples a user copies must work."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_examples():
    assert python_blocks(), "README.md lost its Python examples"


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for block in python_blocks():
        code = block.replace("/tmp/", f"{tmp_path}/")
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert "total" in capsys.readouterr().out


def c_blocks() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```c\n(.*?)```", text, flags=re.S)


def test_readme_c_example_compiles_and_runs(tmp_path):
    """The README's C API example, built against libcz.a, runs the demo model."""
    import subprocess

    from czmodel.compress.pipeline import save
    from czmodel.demo import DEMO_CONFIG, lenet300_graph, load_demo_model

    (block,) = c_blocks()
    rt = os.path.join(ROOT, "runtime_c")
    subprocess.run(["make", "-C", rt, "-s", "lib"], check=True, capture_output=True)
    src = tmp_path / "example.c"
    src.write_text(block)
    exe = tmp_path / "example"
    subprocess.run(["gcc", str(src), "-I", os.path.join(rt, "include"), "-o", str(exe),
                    os.path.join(rt, "build", "libcz.a"), "-lzstd", "-lm", "-fopenmp"],
                   check=True, capture_output=True)
    w = {k: v for k, v in load_demo_model().items() if k.startswith("fc")}
    save(tmp_path / "m.cz", w, DEMO_CONFIG, graph=lenet300_graph())
    r = subprocess.run([str(exe), str(tmp_path / "m.cz")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "output shape 1 x 10" in r.stdout
    bad = tmp_path / "bad.cz"
    bad.write_bytes(b"\x89CZM\r\n\x1a\n" + b"\x00" * 40)
    r = subprocess.run([str(exe), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("open: ")
