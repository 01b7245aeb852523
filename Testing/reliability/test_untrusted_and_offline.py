"""Untrusted files are read as data, never run; nothing talks to the network at run time.

1. A scan of MedSegLensLib's syntax trees for every way Python can run code from a file: unpickling,
   `torch.load` without `weights_only=True`, `torch.jit.load`, `yaml.load`, `eval`/`exec`, shell commands.
   (Malicious pickles themselves: Testing/test_byom_safety.py and test_models_storage.py; a pickle beside the
   weights: reliability/test_bad_artefacts_cli.py.)
2. Real CLI commands (check, segment) with every non-loopback socket connection refused by a sitecustomize.
"""

from __future__ import annotations

import ast

import nibabel as nib
import numpy as np
import pytest
from conftest import ROOT, subprocess_env
from reliability_support import run_cli
from worker_cases import SHAPE, save_tiny_model, write_case

LIBRARY = ROOT / "MedSegLensLib"
# The one sanctioned unpickler: reads torch archives with an allow-list and never imports anything else.
INERT_UNPICKLER = LIBRARY / "models" / "external" / "inert_pickle.py"
FORBIDDEN_CALLS = {
    "pickle.load",
    "pickle.loads",
    "cPickle.load",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "cloudpickle.load",
    "cloudpickle.loads",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "torch.jit.load",
    "jit.load",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "os.system",
    "os.popen",
    "eval",
    "exec",
    "compile",
    "pandas.read_pickle",
    "pd.read_pickle",
}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return "?"


def keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unsafe_calls(source: str, where: str, unpickler_allowed: bool = False) -> list[str]:
    """Every call in `source` that could run code from a file's contents."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and not unpickler_allowed:
            if any(dotted(base).endswith("Unpickler") for base in node.bases):
                found.append(f"{where}:{node.lineno}: class {node.name} subclasses an Unpickler")
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        line = f"{where}:{node.lineno}: {name}"
        if name in FORBIDDEN_CALLS or (name.endswith("Unpickler") and not unpickler_allowed):
            found.append(line)
        elif name == "torch.load" and not keyword_is(node, "weights_only", True):
            found.append(line + " without weights_only=True")
        elif name in ("np.load", "numpy.load") and keyword_is(node, "allow_pickle", True):
            found.append(line + " with allow_pickle=True")
        elif name.startswith("subprocess.") and keyword_is(node, "shell", True):
            found.append(line + " with shell=True")
    return found


def test_the_scan_finds_what_it_looks_for():
    """The scanner flags each kind of unsafe call (so an empty result below means something)."""
    bad = (
        "import pickle, torch, yaml, numpy as np, subprocess\n"
        "pickle.loads(b'')\ntorch.load('x')\ntorch.load('x', weights_only=False)\ntorch.jit.load('m.pt')\n"
        "yaml.load(t)\nnp.load('a.npy', allow_pickle=True)\neval('1')\nsubprocess.run('ls', shell=True)\n"
        "class U(pickle.Unpickler):\n    pass\n"
    )
    assert len(unsafe_calls(bad, "bad.py")) == 9
    good = "import torch, yaml, numpy as np\ntorch.load('x', weights_only=True)\nyaml.safe_load(t)\nnp.load('a')\n"
    assert unsafe_calls(good, "good.py") == []


def test_the_library_never_runs_code_from_files():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 50
    found = []
    for path in files:
        found += unsafe_calls(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), unpickler_allowed=path == INERT_UNPICKLER
        )
    assert found == []


def test_the_one_unpickler_resolves_names_from_an_allow_list():
    tree = ast.parse(INERT_UNPICKLER.read_text())
    unpicklers = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and any(dotted(b).endswith("Unpickler") for b in n.bases)
    ]
    assert len(unpicklers) == 1
    methods = {m.name for m in unpicklers[0].body if isinstance(m, ast.FunctionDef)}
    assert "find_class" in methods, "an Unpickler without find_class imports whatever the pickle names"


BLOCKER = '''
"""Test harness: refuse (and record) every socket connection that leaves this machine."""
import os, socket

_connect = socket.socket.connect
_LOG = os.environ["MEDSEGLENS_TEST_NET_LOG"]


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    local = self.family == socket.AF_UNIX or str(host) in ("127.0.0.1", "::1", "localhost")
    if not local:
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {address!r}\\n")
        raise OSError(101, f"network blocked by the test: {address!r}")
    return _connect(self, address)


socket.socket.connect = _guarded
socket.socket.connect_ex = lambda self, address: _guarded(self, address) or 0
'''


@pytest.fixture
def offline_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = subprocess_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    env["MEDSEGLENS_TEST_NET_LOG"] = str(tmp_path / "net.log")
    env["MEDSEGLENS_CACHE"] = str(tmp_path / "cache")  # an empty cache: nothing may be fetched to fill it
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)
    return env


@pytest.mark.slow  # two fresh processes that import torch and MONAI
def test_segmenting_a_case_makes_no_network_connection(tmp_path, offline_env):
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 443), 2)"],
        env=offline_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0 and "network blocked by the test" in probe.stderr, "the blocker is not active"
    (tmp_path / "net.log").unlink()

    model = save_tiny_model(tmp_path / "model")
    case = write_case(tmp_path / "cases", np.random.default_rng(0))
    checked = run_cli("check", "--case", case, env=offline_env)
    assert checked.returncode == 0, checked.stderr
    out = tmp_path / "seg.nii.gz"
    segmented = run_cli("segment", "--model", model, "--case", case, "--out", out, "--device", "cpu", env=offline_env)
    assert segmented.returncode == 0, segmented.stderr
    assert nib.load(str(out)).shape == SHAPE
    assert not (tmp_path / "net.log").exists(), (tmp_path / "net.log").read_text()
