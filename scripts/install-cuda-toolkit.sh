#!/usr/bin/env bash
# install-cuda-toolkit.sh: installs Debian's CUDA toolkit (nvidia-cuda-toolkit,
# CUDA 11.8 on bookworm) and g++-11, the newest host compiler that nvcc 11.8
# accepts, so `make kernels` can build kernels/gotune.fatbin.
#
# The toolkit lives in Debian's non-free component, which a stock bookworm
# image does not enable: this script adds "contrib non-free non-free-firmware"
# to every stanza of /etc/apt/sources.list.d/debian.sources (deb822 format) or,
# on images that still use it, to /etc/apt/sources.list. Re-running is safe:
# components already present are not added twice, and apt-get install of an
# installed package is a no-op.
#
# Needs root (it edits apt sources and installs packages). Downloads ~2-3 GB.
set -euo pipefail

need=(contrib non-free non-free-firmware)
if [[ $(id -u) -ne 0 ]]; then
  echo "install-cuda-toolkit.sh: must run as root (apt sources and packages)" >&2
  exit 1
fi

deb822=/etc/apt/sources.list.d/debian.sources
legacy=/etc/apt/sources.list
if [[ -f $deb822 ]]; then
  tmp=$(mktemp)
  # Append each missing component to every "Components:" line.
  awk -v need="${need[*]}" '
    /^Components:/ {
      n = split(need, want, " ")
      for (i = 1; i <= n; i++) {
        found = 0
        m = split($0, have, /[ \t]+/)
        for (j = 2; j <= m; j++) if (have[j] == want[i]) found = 1
        if (!found) $0 = $0 " " want[i]
      }
    }
    { print }
  ' "$deb822" >"$tmp"
  if ! cmp -s "$tmp" "$deb822"; then
    cp "$deb822" "$deb822.bak-gotune"
    cat "$tmp" >"$deb822"
    echo "install-cuda-toolkit.sh: enabled ${need[*]} in $deb822"
  fi
  rm -f "$tmp"
elif [[ -f $legacy ]]; then
  tmp=$(mktemp)
  awk -v need="${need[*]}" '
    /^deb(-src)?[ \t]/ {
      n = split(need, want, " ")
      for (i = 1; i <= n; i++) {
        found = 0
        m = split($0, have, /[ \t]+/)
        for (j = 3; j <= m; j++) if (have[j] == want[i]) found = 1
        if (!found) $0 = $0 " " want[i]
      }
    }
    { print }
  ' "$legacy" >"$tmp"
  if ! cmp -s "$tmp" "$legacy"; then
    cp "$legacy" "$legacy.bak-gotune"
    cat "$tmp" >"$legacy"
    echo "install-cuda-toolkit.sh: enabled ${need[*]} in $legacy"
  fi
  rm -f "$tmp"
else
  echo "install-cuda-toolkit.sh: found neither $deb822 nor $legacy" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# --no-install-recommends keeps out the GUI profilers (nsight) and the
# driver packages: nvcc, ptxas, fatbinary and cuobjdump are all we need.
apt-get install -y --no-install-recommends nvidia-cuda-toolkit g++-11

nvcc --version
g++-11 --version | head -n 1
echo "install-cuda-toolkit.sh: done; build with: make -C kernels kernels"
