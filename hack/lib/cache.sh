# Sourced by the build scripts: one cache entry is built by one process at a
# time, and appears whole or not at all. Two test runs on one machine (two
# clones, or CI beside a developer) otherwise raced on a fixed `.partial` path.

# The cache root shared by every build script.
cache_root() { echo "${SMTPC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/smtp-connector}"; }

# cache_lock ENTRY: holds an exclusive lock on ENTRY (a cache path) until the
# calling script exits. A second builder waits here, then finds the entry
# built; callers check for it again after taking the lock.
cache_lock() {
  local lock="$1.lock" fd
  mkdir -p "$(dirname "$lock")"
  exec {fd}>"$lock"
  if ! flock -n "$fd"; then
    echo "waiting for another build of $1 to finish" >&2
    flock "$fd"
  fi
}

# cache_reuse ENTRY BIN: when ENTRY already holds BIN, prints BIN and ends
# the calling script (touching ENTRY: a use). Otherwise takes ENTRY's lock and
# looks again, since another builder may have finished while this one waited.
cache_reuse() {
  local attempt
  for attempt in first locked; do
    if [[ -x $2 ]]; then
      touch "$1"
      echo "$2"
      exit 0
    fi
    [[ $attempt == first ]] && cache_lock "$1"
  done
  return 0
}

# cache_partial ENTRY: sets `partial` to a fresh directory beside ENTRY (the
# same file system, so cache_commit's rename is atomic). The caller's EXIT trap
# removes it if the build fails.
cache_partial() {
  partial=$(mktemp -d "$1.tmp.XXXXXX")
  chmod 755 "$partial"
}

# cache_commit ENTRY: puts the finished `partial` in ENTRY's place, whole.
cache_commit() {
  rm -rf "$1"
  mv -T "$partial" "$1"
}

# cache_prune DIR KEEP: removes every entry of DIR but KEEP that nobody used
# for a week (a use touches its entry), so a build for other sources running
# beside this one, or one a second checkout still uses, is left alone.
cache_prune() {
  find "$1" -mindepth 1 -maxdepth 1 -type d ! -path "$2" ! -name '*.tmp.*' -mtime +7 -exec rm -rf {} +
}
