#!/usr/bin/env bash
# Installs what the test suite needs besides the Rust toolchain: real peers the tests start on
# loopback (Prometheus' promtool, ...). Run by the README's test command and so by .ci/run;
# idempotent: what is already there is not installed again.
#
# Debian packages go in with apt-get (as root, or through sudo); Python packages into a virtual
# environment under target/pyenv, whose bin/ the tests look in.
#
# To add a prerequisite: one line in DEB or PIP below, with the command that shows it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# "command-that-proves-it-is-installed package"
DEB=(
  "promtool prometheus"
  "prometheus-blackbox-exporter prometheus-blackbox-exporter"
  "man man-db"
  "python3 python3"
  "etcd etcd-server"
  "ngircd ngircd"
)
# "module package": Debian's Python modules, tried with Debian's /usr/bin/python3 -c 'import X'
PYDEB=(
  "epics python3-pyepics"
)
# "module-or-command package==version" (the module is tried with python3 -c 'import X')
PIP=(
  "caproto caproto==1.3.0"
)

missing=()
for entry in "${DEB[@]}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
for entry in "${PYDEB[@]}"; do
  read -r mod pkg <<<"$entry"
  /usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "prereqs: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "prereqs: need root (or sudo) to install: apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${#PIP[@]}" -gt 0 ]; then
  venv=target/pyenv
  if [ ! -x "$venv/bin/python3" ]; then
    echo "prereqs: making a Python environment in $venv"
    python3 -m venv "$venv" 2>/dev/null || {
      python3 -m pip install -q --user virtualenv && python3 -m virtualenv -q "$venv"
    }
  fi
  need=()
  for entry in "${PIP[@]}"; do
    read -r probe spec <<<"$entry"
    if ! "$venv/bin/python3" -c "import $probe" >/dev/null 2>&1 && [ ! -x "$venv/bin/$probe" ]; then
      need+=("$spec")
    fi
  done
  if [ "${#need[@]}" -gt 0 ]; then
    echo "prereqs: installing Python packages: ${need[*]}"
    "$venv/bin/python3" -m pip install -q "${need[@]}"
  fi
fi
echo "prereqs: ready"
