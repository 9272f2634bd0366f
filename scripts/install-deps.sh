#!/usr/bin/env bash
# install-deps.sh installs what code4me needs from the system to build and to
# run its private PostgreSQL (with pgvector) and Redis servers:
#
#   postgresql, postgresql-server-dev-<major>, redis-server, build-essential,
#   dpkg-dev, and the pgvector extension for the installed server; nodejs and
#   npm to build the dashboard (make web), and chromium for its browser tests.
#
# It is idempotent: it checks first and only installs what is missing, so it
# is cheap to call from `make run` and `make test`. As root it uses apt-get;
# as another user it prints one line naming what to install and exits 1.
#
# pgvector: when the server has no vector.control, a binary package
# (postgresql-<major>-pgvector) is used if apt knows one; otherwise (Debian 12
# has none) Debian's pgvector source package is fetched from a release that
# carries it (a deb-src-only line in /etc/apt/sources.list.d/code4me-src.list,
# so no binaries come from that release), built against the installed
# server's headers with PGXS and installed.
#
# Environment:
#   CODE4ME_PGVECTOR_SUITE  Debian suite to take the pgvector source from (default trixie)
#   CODE4ME_DEPS_LOG        where apt/make output goes (default a temp file, kept on failure)
#   CODE4ME_PGVECTOR_REBUILD=1  build pgvector from source even when it is installed
set -euo pipefail

suite="${CODE4ME_PGVECTOR_SUITE:-trixie}"
src_list=/etc/apt/sources.list.d/code4me-src.list
log="${CODE4ME_DEPS_LOG:-$(mktemp -t code4me-deps.XXXXXX.log)}"
export DEBIAN_FRONTEND=noninteractive
work=""
cleanup() {
	local rc=$?
	[[ -n "$work" ]] && rm -rf "$work"
	# Keep the log only when something failed and nobody asked for it.
	if [[ $rc -eq 0 && -z "${CODE4ME_DEPS_LOG:-}" ]]; then rm -f "$log"; fi
}
trap cleanup EXIT

say() { printf 'install-deps: %s\n' "$*"; }
die() {
	printf 'install-deps: %s\n' "$*" >&2
	if [[ -s "$log" ]]; then
		printf 'install-deps: last lines of %s:\n' "$log" >&2
		tail -n 20 "$log" | sed 's/^/  /' >&2
	fi
	exit 1
}
# run executes a command with its output going to the log.
run() { "$@" >>"$log" 2>&1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# pg_major prints the newest PostgreSQL server major installed, or nothing.
pg_major() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x "$d" ]] || continue
		d="${d#/usr/lib/postgresql/}"
		d="${d%%/*}"
		if [[ -z "$best" || "$d" -gt "$best" ]]; then best="$d"; fi
	done
	printf '%s' "$best"
}

apt_updated=0
apt_update_once() {
	if [[ "$apt_updated" -eq 0 ]]; then
		run apt-get update -q || die "apt-get update failed; check the network and /etc/apt/sources.list*"
		apt_updated=1
	fi
}

apt_install() {
	apt_update_once
	run apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	die "this script needs a Debian-based system (dpkg and apt-get); install PostgreSQL with pgvector and redis-server by hand"
fi

# Step 1: system packages.
missing=()
for p in postgresql redis-server build-essential dpkg-dev; do
	installed "$p" || missing+=("$p")
done
# Node.js and Chromium count as present when their commands are, whoever
# installed them (NodeSource's nodejs carries npm and conflicts with Debian's).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
major="$(pg_major)"
if [[ -n "$major" ]] && ! installed "postgresql-server-dev-$major"; then
	missing+=("postgresql-server-dev-$major")
fi
if ((${#missing[@]})); then
	if ! is_root; then
		die "missing packages; run as root (sudo bash scripts/install-deps.sh) or: sudo apt-get install -y ${missing[*]}"
	fi
	apt_install "${missing[@]}"
	major="$(pg_major)"
	[[ -n "$major" ]] || die "postgresql installed but no server binary under /usr/lib/postgresql/*/bin"
	if ! installed "postgresql-server-dev-$major"; then
		apt_install "postgresql-server-dev-$major"
		missing+=("postgresql-server-dev-$major")
	fi
	say "packages: installed ${missing[*]}"
else
	say "packages: ok (postgresql $major, redis-server, build-essential, dpkg-dev, postgresql-server-dev-$major, nodejs, npm, chromium)"
fi

# Step 2: pgvector for that server.
pg_config="/usr/lib/postgresql/$major/bin/pg_config"
[[ -x "$pg_config" ]] || die "no $pg_config; install postgresql-server-dev-$major"
control="$("$pg_config" --sharedir)/extension/vector.control"
if [[ -f "$control" && "${CODE4ME_PGVECTOR_REBUILD:-}" != 1 ]]; then
	say "pgvector: ok ($(sed -n "s/^default_version = '\(.*\)'/\1/p" "$control") in $(dirname "$control"))"
	exit 0
fi
if ! is_root; then
	die "pgvector is not installed for PostgreSQL $major; run as root: sudo bash scripts/install-deps.sh"
fi

binpkg="postgresql-$major-pgvector"
if [[ -n "$(apt-cache policy "$binpkg" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]]; then
	apt_install "$binpkg"
	[[ -f "$control" ]] || die "$binpkg installed but $control is missing"
	say "pgvector: installed $binpkg"
	exit 0
fi

# No binary package: build Debian's source package. Only our deb-src list is
# refreshed, so unrelated broken sources cannot stop us.
want="deb-src http://deb.debian.org/debian $suite main"
if [[ "$(cat "$src_list" 2>/dev/null)" != "$want" ]]; then
	printf '%s\n' "$want" >"$src_list"
fi
run apt-get update -q \
	-o Dir::Etc::sourcelist="$src_list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 ||
	die "apt-get update for $src_list failed; is deb.debian.org reachable?"

work="$(mktemp -d -t code4me-pgvector.XXXXXX)"
chmod 755 "$work" # apt's _apt user downloads into it
(cd "$work" && run apt-get source -q pgvector) ||
	die "apt-get source pgvector failed (suite $suite); set CODE4ME_PGVECTOR_SUITE to a Debian suite that has pgvector"
srcdir="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
[[ -n "$srcdir" ]] || die "apt-get source pgvector produced no pgvector-* directory in $work"
# with_llvm=no: skip JIT bitcode, which would need clang; PGXS builds the same
# extension without it. OPTFLAGS="": no -march=native, so the library runs on
# any x86-64 this image may move to (pgvector picks SIMD paths at run time).
pgxs=(USE_PGXS=1 PG_CONFIG="$pg_config" with_llvm=no OPTFLAGS=)
run make -C "$srcdir" "${pgxs[@]}" ||
	die "building pgvector in $srcdir failed"
run make -C "$srcdir" "${pgxs[@]}" install ||
	die "installing pgvector failed"
[[ -f "$control" ]] || die "pgvector built but $control is missing"
say "pgvector: built ${srcdir##*/} from Debian $suite source for PostgreSQL $major"
