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
