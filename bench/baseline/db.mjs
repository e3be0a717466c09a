// The baseline's database: the same tables as p2pchat's Store (src/services/Store.ts), the
// `messages` and `pins` tables and indexes of migration 1, and its settings (busy_timeout
// 5000, WAL, foreign_keys ON) but synchronous FULL: every commit here waits for its own
// fsync, where the Store commits with NORMAL and fsyncs explicitly (Store.durable) where a
// promise is made; bench/README.md says why the baseline keeps FULL. Every statement is
// prepared once. bench/drivers/fsync.mjs measures one of these FULL commits (fsync-p99).
//
// SQLite through p2pchat's own seam (src/services/Sql.ts, bundled by bench/lib/build.mjs
// into dist/bench/sql.js), so that the baseline runs on the backend p2pchat runs on
// (node:sqlite or better-sqlite3, P2PCHAT_SQLITE): the same SQLite library on both sides.
// bench/run.mjs bundles it first; run alone, this module bundles it when it is missing.
import * as fs from "node:fs"
import * as path from "node:path"

const SQL_BUNDLE = new URL("../../dist/bench/sql.js", import.meta.url)
// esbuild is loaded only when the bundle is missing: a measured baseline process never loads it
if (!fs.existsSync(SQL_BUNDLE)) await (await import("../lib/build.mjs")).bundleSql()
const { openSql } = await import(SQL_BUNDLE.href)

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('plain', 'classic-3des', 'noise')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'sent', 'received')),
    UNIQUE (peer, direction, id)
  );
  CREATE INDEX IF NOT EXISTS messages_peer_seq ON messages (peer, seq);
  CREATE INDEX IF NOT EXISTS messages_pending ON messages (peer, seq) WHERE direction = 'sent' AND state = 'pending';
  CREATE TABLE IF NOT EXISTS pins (
    username TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    pinned_at TEXT NOT NULL
  );
`

export const openDb = (dir) => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const db = openSql(path.join(dir, "baseline.db"), { timeoutMs: 5000 })
  db.pragma("busy_timeout = 5000")
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  db.pragma("foreign_keys = ON")
  db.exec(SCHEMA)
  const insertReceived = db.prepare(
    `INSERT INTO messages (id, peer, direction, text, at, mode, state)
     VALUES (?, ?, 'received', ?, ?, ?, 'received') ON CONFLICT (peer, direction, id) DO NOTHING`
  )
  const insertSent = db.prepare(
    `INSERT INTO messages (id, peer, direction, text, at, mode, state) VALUES (?, ?, 'sent', ?, ?, ?, 'pending')`
  )
  const setDelivered = db.prepare(
    `UPDATE messages SET state = 'delivered'
     WHERE peer = ? AND direction = 'sent' AND id = ? AND state <> 'delivered'`
  )
  const getPin = db.prepare(`SELECT public_key FROM pins WHERE username = ?`)
  const setPin = db.prepare(`INSERT INTO pins (username, public_key, pinned_at) VALUES (?, ?, ?)`)
  return {
    db,
    /** Stores an incoming message once; true when new. */
    received: (id, peer, text, mode) => insertReceived.run([id, peer, text, new Date().toISOString(), mode]).changes > 0,
    sent: (id, peer, text, mode) => insertSent.run([id, peer, text, new Date().toISOString(), mode]),
    delivered: (id, peer) => setDelivered.run([peer, id]),
    /** Trust on first use: true when the key matches the pinned one (pinning it the first time). */
    trust: (username, key) => {
      const row = getPin.get([username])
      if (row === undefined) {
        setPin.run([username, key, new Date().toISOString()])
        return true
      }
      return Buffer.compare(row.public_key, key) === 0
    },
    close: () => db.close()
  }
}
