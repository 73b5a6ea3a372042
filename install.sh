#!/bin/sh
# Install fleetctl for the current user, the way PEP 668 allows on Debian 12 / Ubuntu 24.04:
# a private venv in ~/.local/share/fleetctl/venv and a link in ~/.local/bin. Needs no root,
# only python3 (3.11+) with its venv module (Debian/Ubuntu: the python3-venv package).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data="${XDG_DATA_HOME:-$HOME/.local/share}"
venv="$data/fleetctl/venv"
bin="$HOME/.local/bin"

die() { echo "install.sh: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 is missing; as root: apt-get install -y python3 python3-venv"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "fleetctl needs Python 3.11 or newer (found $(python3 -V 2>&1))"
python3 -c 'import ensurepip, venv' 2>/dev/null ||
  die "python3's venv module is missing; as root: apt-get install -y python3-venv"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || die "could not create $venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here" ||
  die "pip could not install fleetctl into $venv (see above)"
mkdir -p "$bin"
ln -sfn "$venv/bin/fleetctl" "$bin/fleetctl"
echo "installed fleetctl $("$venv/bin/fleetctl" --version | awk '{print $NF}') in $venv; command: $bin/fleetctl"
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "note: $bin is not on your PATH yet (it is after your next login on Debian/Ubuntu)" ;;
esac
