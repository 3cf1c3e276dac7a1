#!/usr/bin/env bash
# Installs crew's build and test dependencies on Debian 12. Idempotent: asks dpkg first and
# touches apt only for what is missing, so a provisioned machine pays nothing.
set -euo pipefail

packages=(
  g++ cmake ninja-build make pkg-config
  # Debian's clang-format-14; the `clang-format` package provides the unversioned name.
  clang-format
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev libcereal-dev libtbb-dev
  gnuplot-nox libcurl4-openssl-dev libboost-dev
  # For later comparisons against Python's executors.
  python3
)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
  if [[ "${status}" != "install ok installed" ]]; then
    missing+=("${pkg}")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all present"
  exit 0
fi

echo "deps: missing ${missing[*]}"

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "deps: not root and no sudo; install these as root and re-run:" >&2
  echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps: installed ${missing[*]}"
