# Shared by scripts/serve and scripts/test: make .venv and install the project.
# Sourced, not run. Re-installs only when pyproject.toml or the kernels change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PQC_VENV:-$ROOT/.venv}"

find_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        # stderr silenced: version-manager shims complain about versions they lack.
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
                2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "pqc-engine needs Python 3.11 or newer on PATH." >&2
    return 1
}

ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        "$(find_python)" -m venv "$VENV"
    fi
    local stamp="$VENV/.pqc-installed-$extras"
    local newest
    # Sources only: the install itself rewrites the built module in bindings/,
    # which must not make the other script's stamp look stale.
    newest="$(find "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/kernels" \
        "$ROOT/bindings/build.py" -newer "$stamp" \
        \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.toml' \) \
        -print -quit 2>/dev/null || true)"
    if [ ! -f "$stamp" ] || [ -n "$newest" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]"
        touch "$stamp"
    fi
}
