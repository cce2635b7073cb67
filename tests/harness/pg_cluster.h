// PgCluster: a throwaway PostgreSQL 15 server for end-to-end tests and benchmarks.
//
// Start() runs initdb into a fresh directory /tmp/tenantsync-<name>-XXXXXX, writes a config for
// logical decoding (wal_level=logical, 20 slots, 20 walsenders, fsync=off, trust auth on
// 127.0.0.1 only, unix socket inside the data directory) and starts `postgres` on a free TCP port
// as a child of this process. When the process runs as root (CI containers), initdb and postgres
// run as the `postgres` OS user through `runuser -u postgres --` and the directory is chowned to
// it, because the server refuses to run as root.
//
// Why `postgres` and not `pg_ctl start`: pg_ctl detaches the server, which then belongs to PID 1;
// some sandboxes' PID 1 never reaps, leaving zombie `postgres` entries, and a detached server
// survives ctest's timeout kill. A child server is waited for exactly and dies with the process
// tree. Stop modes send the same signals as `pg_ctl stop -m smart|fast|immediate`.
//
// Cleanup contract: no server outlives the test binary.
//   - the destructor stops the server (immediate shutdown: a signal, no SQL) and removes the
//     directory;
//   - an atexit handler does the same for clusters still alive at exit();
//   - SIGTERM, SIGINT, SIGHUP and SIGABRT (failed assert, std::terminate) send an immediate
//     shutdown to every live server, then let the signal take its previous course;
//   - after a SIGKILL of the test binary the server may be left running: the next Start() in any
//     process sweeps directories whose owning process is gone, stopping their server.
// Set TENANTSYNC_KEEP_CLUSTER_DIRS=1 to keep directories (server.log) for debugging.
//
// Thread safety: a PgCluster is used by one thread at a time; distinct clusters are independent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::testing {

struct ClusterOptions {
  // wal_level of the server. Default "logical" (what tenantsync needs); "replica" starts a server
  // on which logical slots fail, to test the wal_level precondition error.
  std::string wal_level = "logical";
  // Lines appended to postgresql.conf after ours, so they win ("shared_buffers = '1GB'").
  std::vector<std::string> extra_conf;
  // Directory holding initdb, postgres. Default: $TENANTSYNC_PG_BIN, else
  // /usr/lib/postgresql/15/bin.
  std::string bin_dir;
  // Seconds to wait for the server to accept connections (and for a stop to finish) before
  // giving up (start) or sending SIGKILL (stop).
  int timeout_seconds = 60;
};

// How Stop() shuts the server down; the same signals as `pg_ctl stop -m <mode>`.
enum class StopMode {
  kSmart,      // SIGTERM: waits for clients to disconnect.
  kFast,       // SIGINT: rolls back open transactions, checkpoints, exits. Clean.
  kImmediate,  // SIGQUIT: no checkpoint; the next start runs crash recovery.
};

class PgCluster {
 public:
  // Creates and starts a cluster. `name` is only used in the directory name and messages
  // ("source", "target"). Errors name the failing step and end with the server log's tail.
  static StatusOr<std::unique_ptr<PgCluster>> Start(std::string name, ClusterOptions opts = {});

  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;
  // Immediate shutdown (signals only) and removal of the directory. Never throws.
  ~PgCluster();

  // "postgresql://USER@127.0.0.1:PORT/db", trust auth, TCP. The default user is the superuser;
  // tests run the bridge as the least-privilege roles of tests/harness/bridge_roles.h.
  std::string Url(std::string_view db = "postgres", std::string_view user = "postgres") const;
  int port() const { return port_; }
  const std::string& name() const { return name_; }
  // PGDATA. The directory above it also holds server.log.
  const std::string& data_dir() const { return data_dir_; }
  std::string log_path() const { return base_dir_ + "/server.log"; }
  // Last `lines` lines of server.log, for failure messages.
  std::string LogTail(int lines = 20) const;
  bool running() const { return postmaster_pid_ > 0; }

  // Stops the server and waits for it to exit. OK if it is already stopped.
  Status Stop(StopMode mode = StopMode::kFast);
  // SIGKILL to the postmaster and all its children: a machine crash, as far as this server's
  // processes are concerned (the OS page cache survives, so fsync=off loses nothing). The next
  // StartServer() runs crash recovery.
  Status Kill();
  // Starts a stopped or killed server again on the same port and directory.
  Status StartServer();
  // Stop(immediate ? kImmediate : kFast) then StartServer().
  Status Restart(bool immediate);

  // Creates a database named `<prefix>_<n>` with n unique within this process; returns the name.
  // REQUIRES: prefix matches [a-z_][a-z0-9_]{0,40}.
  StatusOr<std::string> CreateDatabase(std::string_view prefix);
  Status DropDatabase(std::string_view db);
  // A new connection to `db` as the superuser.
  StatusOr<PgConn> Connect(std::string_view db = "postgres") const;
  // Runs `sql` (one or more statements) in `db` on a fresh connection.
  Status Exec(std::string_view db, const std::string& sql) const;
  // First column of the first row of `sql` in `db`; "" for SQL NULL; kNotFound for no rows.
  StatusOr<std::string> QueryValue(std::string_view db, const std::string& sql) const;
  // QueryValue parsed as an integer (counts, sizes).
  StatusOr<int64_t> QueryInt(std::string_view db, const std::string& sql) const;

 private:
  PgCluster(std::string name, ClusterOptions opts);

  Status Init();         // mkdtemp, initdb, config
  Status WriteConfig();  // postgresql.conf for port_, pg_hba.conf
  Status Launch();       // spawn postgres, wait until it accepts connections
  Status WaitForExit(int timeout_seconds);
  // Immediate stop and directory removal; idempotent. The destructor and the atexit handler.
  void StopAndRemoveNoThrow();
  std::vector<std::string> AsServerUser(std::vector<std::string> argv) const;

  std::string name_;
  ClusterOptions opts_;
  std::string bin_dir_;
  std::string base_dir_;  // /tmp/tenantsync-<name>-XXXXXX
  std::string data_dir_;  // base_dir_/data
  int port_ = 0;
  pid_t child_pid_ = -1;       // what we spawned: postgres, or runuser running it
  pid_t postmaster_pid_ = -1;  // from postmaster.pid; -1 when stopped
  int slot_ = -1;              // index in the process-wide registry used by signal handlers
};

}  // namespace tenantsync::testing
