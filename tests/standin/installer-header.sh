#!/bin/bash
# STAND-IN CONDA INSTALLER -- FOR TESTS ONLY. NOT ANACONDA.
#
# The real Anaconda installer cannot be downloaded on the test machines. This script has
# the same batch interface (bash installer.sh -b [-u] -p PREFIX) and leaves the same
# things the deploy relies on: PREFIX/bin/python and PREFIX/bin/jupyter with a real
# Jupyter Notebook 7 from PyPI. It builds PREFIX as a Python venv from the host's python3
# (needs python3-venv) and installs wheels carried inside this file, so it needs no network.
# Everything after the __PAYLOAD__ line is a tar archive of those wheels.
set -eu
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
python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --no-index --find-links "$work/wheels" 'notebook>=7'
echo "installation finished."
exit 0
__PAYLOAD__
