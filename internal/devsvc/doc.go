// Package devsvc runs private PostgreSQL and Redis servers from the system's
// binaries, each under a directory of its own, for `code4me serve` when no
// database or Redis is configured and for tests (through package testenv).
//
// Both servers listen on 127.0.0.1 only, on a free port chosen at start, and
// require a random password that is kept in a mode-0600 file in their
// directory and never logged. Data survives restarts: PostgreSQL's data
// directory is created by initdb on first use and reused afterwards; Redis
// keeps an append-only file and RDB snapshots.
//
// Layout of a PostgreSQL directory DIR:
//
//	DIR/data          the cluster (PGDATA), owned by the server's user
//	DIR/password      the superuser's password (user "code4me")
//	DIR/postgres.log  the server log
//
// Layout of a Redis directory DIR:
//
//	DIR/redis.conf    written at every start (port, password, persistence)
//	DIR/password      the password (requirepass)
//	DIR/redis.pid     the running server's pid
//	DIR/redis.log     the server log
//	DIR/appendonlydir, DIR/dump.rdb  the data
//
// PostgreSQL refuses to run as root: when this process is root, initdb and
// the server run as the "postgres" system user and the data directory is
// owned by it. When that user cannot reach DIR (a checkout under /root, mode
// 0700), the cluster lives in /var/lib/code4me/postgres-<hash of DIR>/data
// and DIR/data is a symbolic link to it; PostgresCanUse tells in advance.
// A new DIR at a path whose cluster is still there (a checkout deleted and
// cloned again, as on a CI machine that keeps /var/lib) has neither the link
// nor the password that opened that cluster: the orphan's server, if it
// still runs, is stopped, the orphan removed and a new cluster made. A DIR
// that lost only its link keeps its cluster. Each such cluster's home names
// its DIR in an owner file; a DIR under the temporary directory that no
// longer exists (a clone made with mktemp -d, a benchmark's directory) has
// its cluster removed by the next start that uses the system root. Redis keeps its data in DIR,
// so deleting DIR takes the data, but not a running server: Start stops a
// redis-server whose working directory is DIR, deleted, before it starts
// the new one, so that a path cloned again at every CI run does not
// collect one more server each time.
//
// Servers run in a session of their own, so a Ctrl-C in the terminal reaches
// only the parent, which is expected to call Stop. When a server started from
// the same directory is still running (its pid file names a live server
// process whose working directory is that directory, as after a parent that
// was killed), Start adopts it instead of starting a second one, and Stop
// stops it like one it started. A pid file naming a dead process (a crash)
// is removed and a new server started. Several processes may share one
// adopted server; whoever calls Stop stops it for all of them, so a caller
// that shares (package testenv) never calls Stop.
//
// Every error is one line that says what is wrong and how to fix it.
package devsvc
