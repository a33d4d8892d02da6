#!/usr/bin/env bash
# Sourced: `ensure_debian_packages WHO PACKAGE...` installs the Debian packages
# that are missing, with one `apt-get update` before the install (never one per
# package), and waits for apt's lock instead of failing when another setup step
# or engineer is installing at the same moment.
ensure_debian_packages() {
  local who=$1; shift
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || { echo "$who: run as root, or install: apt-get install ${missing[*]}" >&2; return 1; }
  echo "$who: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
}
