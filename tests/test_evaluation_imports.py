"""`hf_mera.evaluation` must stay cheap to import: no torch, transformers or matplotlib at import time."""

import subprocess
import sys
from pathlib import Path

import hf_mera.evaluation

# Load the subpackage under an empty stand-in for `hf_mera` (whose own __init__ imports transformers),
# then list which heavy modules got imported.
_PROBE = """
import sys, types
package = types.ModuleType("hf_mera")
package.__path__ = [{root!r}]
sys.modules["hf_mera"] = package
import hf_mera.evaluation
print(sorted(m for m in ("torch", "transformers", "matplotlib", "datasets", "evaluate") if m in sys.modules))
"""


def test_importing_evaluation_loads_no_heavy_modules():
    root = str(Path(hf_mera.evaluation.__file__).parents[1])
    probe = _PROBE.format(root=root)
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_public_api_is_exported():
    for name in hf_mera.evaluation.__all__:
        assert hasattr(hf_mera.evaluation, name), name
    assert Path(hf_mera.evaluation.CIDER_METRIC_PATH, "cider.py").is_file()
