#!/usr/bin/env bash
# Installs the example's Python packages (requirements.txt, from PyPI) into
# examples/pyview/.venv; does nothing when they are already there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stamp="$here/.venv/.requirements"
if [[ -f $stamp ]] && cmp -s "$stamp" "$here/requirements.txt"; then exit 0; fi
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
