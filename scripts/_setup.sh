# Shared set-up for scripts/demo, scripts/test and scripts/check; sourced, not run.
# Installs what a fresh Debian machine lacks: system libraries (as root, or prints the apt-get line),
# the virtual environment in .venv and the project into it (again only when pyproject.toml changed).

PYTHON=${PYTHON:-python3}

need_python() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Lineside needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)." >&2
        exit 1
    fi
}

# ensure_system_packages PKG...: install the missing Debian packages, or say exactly how and stop.
ensure_system_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing system packages. Install them with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "Installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv [EXTRA]: create .venv and install the project (with the extra) when needed.
ensure_venv() {
    local extra=${1:-}
    local spec="."
    [ -n "$extra" ] && spec=".[$extra]"
    if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
        ensure_system_packages python3-venv
    fi
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    local stamp=".venv/.lineside-installed-${extra:-base}"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Installing Lineside into .venv ($spec)"
        .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
        .venv/bin/python -m pip install -q -e "$spec"
        echo "$want" > "$stamp"
    fi
}

# The shared library pylibdmtx loads at run time.
SYSTEM_PACKAGES=(libdmtx0b)

# ensure_chromium: Debian's chromium at /usr/bin/chromium, which the web HMI's browser tests drive through
# Playwright (Playwright's own browser download cannot work on these machines). Installed as root; otherwise the
# apt-get line is printed and the browser tests skip, saying why.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "No /usr/bin/chromium: the browser tests will be skipped. Install it with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends chromium" >&2
        return 0
    fi
    ensure_system_packages chromium
}

# ensure_epcis12_xsd: the official EPCIS 1.2 XSDs (EPCglobal-epcis-1_2.xsd and the schemas it imports) in
# .venv/share/epcis-1.2-xsd, where the tests' 1.2 schema checks find them. GS1's licence keeps them out of the
# project; the PyPI wheel of EPCPyYes carries them, so that wheel is downloaded (not installed) and only the
# XSDs are kept. Without network the 1.2 checks are skipped, saying why.
EPCIS12_XSD_WHEEL="epcpyyes==4.0.5"
ensure_epcis12_xsd() {
    local dest=.venv/share/epcis-1.2-xsd
    [ -f "$dest/EPCglobal-epcis-1_2.xsd" ] && return 0
    local tmp
    tmp="$(mktemp -d)"
    if ! .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$EPCIS12_XSD_WHEEL"; then
        echo "Could not download $EPCIS12_XSD_WHEEL for the EPCIS 1.2 XSDs: the 1.2 schema checks will be skipped." >&2
        rm -rf "$tmp"
        return 0
    fi
    .venv/bin/python - "$tmp" "$dest" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

tmp, dest = Path(sys.argv[1]), Path(sys.argv[2])
folder = "EPCPyYes/core/tests/schemas/"
staging = tmp / "xsd"
staging.mkdir()
with zipfile.ZipFile(next(tmp.glob("*.whl"))) as wheel:
    for name in wheel.namelist():
        if name.startswith(folder) and name.endswith(".xsd") and "/" not in name[len(folder):]:
            (staging / name[len(folder):]).write_bytes(wheel.read(name))
if not (staging / "EPCglobal-epcis-1_2.xsd").is_file():
    sys.exit(f"{folder}EPCglobal-epcis-1_2.xsd is not in the downloaded wheel")
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.rmtree(dest, ignore_errors=True)
shutil.move(str(staging), str(dest))
PY
    rm -rf "$tmp"
}
