#!/bin/bash
# STAND-IN CONDA INSTALLER -- FOR TESTS ONLY. NOT ANACONDA.
#
# The real Anaconda installer cannot be downloaded on the test machines. This script has
# the same batch interface (bash installer.sh -b [-u] -p PREFIX) and leaves what the deploy
# and a notebook user can tell apart from Anaconda the same way:
#  - PREFIX is a self-contained Python installation, not a virtualenv: its own interpreter
#    (copied from the host's python3) and standard library, site-packages in
#    PREFIX/lib/pythonX.Y/site-packages, scripts in PREFIX/bin, pip in the prefix;
#  - so the user site (~/.local/lib/pythonX.Y/site-packages) is on, and pip falls back to
#    it ("Defaulting to user installation") when the prefix is not writable;
#  - PREFIX/bin/python -m venv works (the host's python3-venv provides ensurepip's wheels);
#  - a real Jupyter Notebook 7 from PyPI, installed from wheels carried inside this file,
#    so it needs no network.
#  - PREFIX/conda-meta/history, which marks a conda environment.
# It has no conda itself. Everything after the __PAYLOAD__ line is a tar archive of the wheels.
set -eu
# Which test release this is (lab/standin VARIANTS); set when the installer is built.
VARIANT=default
batch=0; update=0; prefix=""
while getopts "bup:" opt; do
    case "$opt" in
        b) batch=1 ;;
        u) update=1 ;;
        p) prefix="$OPTARG" ;;
        *) echo "usage: $0 -b [-u] -p PREFIX" >&2; exit 2 ;;
    esac
done
if [ "$batch" != 1 ] || [ -z "$prefix" ]; then
    echo "this stand-in only runs in batch mode: $0 -b [-u] -p PREFIX" >&2; exit 2
fi
if [ -e "$prefix" ] && [ "$update" != 1 ]; then
    echo "ERROR: File or directory already exists: '$prefix'" >&2
    echo "If you want to update an existing installation, use the -u option." >&2
    exit 1
fi
echo "PREFIX=$prefix"
echo "Unpacking payload (stand-in installer, tests only) ..."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
line=$(awk '/^__PAYLOAD__$/ {print NR + 1; exit 0}' "$0")
tail -n +"$line" "$0" | tar -x -C "$work"

interpreter=$(readlink -f "$(command -v python3)")
version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
stdlib="$prefix/lib/python$version"
mkdir -p "$prefix/bin" "$prefix/lib"
# Renamed into place: with -u the old interpreter may be running (cp onto it: "Text file busy").
cp "$interpreter" "$prefix/bin/.python$version.new"
mv -f "$prefix/bin/.python$version.new" "$prefix/bin/python$version"
ln -sfn "python$version" "$prefix/bin/python3"
ln -sfn "python$version" "$prefix/bin/python"
# The standard library (with lib-dynload) makes PREFIX the interpreter's sys.prefix.
rm -rf "$stdlib.new"
cp -a "/usr/lib/python$version" "$stdlib.new"
# Debian's copy is marked externally managed (PEP 668) and patched to install into
# dist-packages under /usr/local; Anaconda's Python is neither. (Its byte code is
# hash-checked without looking at the source: drop the patched module's.)
rm -f "$stdlib.new/EXTERNALLY-MANAGED"
# sysconfig.py up to Python 3.12, a package (sysconfig/__init__.py) from 3.13.
sysconfig=$(python3 -c 'import os, sysconfig; print(os.path.relpath(sysconfig.__file__, os.path.dirname(os.__file__)))')
sed -i "s/prefix_scheme = 'posix_local'/prefix_scheme = 'posix_prefix'/" "$stdlib.new/$sysconfig"
grep -q "prefix_scheme = 'posix_prefix'" "$stdlib.new/$sysconfig"
# Debian's `site` (frozen into the interpreter, so it cannot be patched) puts
# lib/pythonX.Y/dist-packages of the prefix on sys.path: make that the site-packages.
ln -sfn site-packages "$stdlib.new/dist-packages"
find "$stdlib.new" -path '*sysconfig*' -name '*.pyc' -delete
if [ -d "$stdlib/site-packages" ]; then mv "$stdlib/site-packages" "$stdlib.new/"; fi
rm -rf "$stdlib"
mv "$stdlib.new" "$stdlib"
mkdir -p "$stdlib/site-packages"
# pip from its own wheel, then Jupyter, both into the prefix's site-packages.
pip_wheel=$(ls "$work"/wheels/pip-*.whl)
"$prefix/bin/python" "$pip_wheel/pip" install --quiet --no-index --find-links "$work/wheels" --no-warn-script-location pip
"$prefix/bin/python" -m pip install --quiet --no-index --find-links "$work/wheels" --no-warn-script-location 'notebook>=7'
site=$("$prefix/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
case "$VARIANT" in
    next) "$prefix/bin/python" -m pip install --quiet --no-index --find-links "$work/wheels" standin_release ;;
    cannot-start)
        echo 'raise SystemExit("stand-in TEST ONLY: this release'"'"'s server cannot start")' >>"$site/notebook/app.py" ;;
    fails-as-service)
        # Where people's work runs: the single server's unit, or a person's server the hub
        # started (its JUPYTERHUB_USER), but not the check account's (smoke-check).
        printf '%s\n' 'import os as _os' \
            'if "/jupyter.service" in open("/proc/self/cgroup").read() or _os.environ.get("JUPYTERHUB_USER", "smoke-check") != "smoke-check":' \
            '    raise SystemExit("stand-in TEST ONLY: this release'"'"'s server cannot start as jupyter.service or a person'"'"'s server")' \
            >>"$site/notebook/app.py" ;;
esac
# What tools look for to tell a conda environment (IPython's %conda among them).
mkdir -p "$prefix/conda-meta"
touch "$prefix/conda-meta/history"
echo "installation finished."
exit 0
__PAYLOAD__
