// The baseline's database: the same tables as p2pchat's Store (src/services/Store.ts), the
// `messages` and `pins` tables and indexes of migration 1, and its settings (busy_timeout
// 5000, WAL, foreign_keys ON) but synchronous FULL: every commit here waits for its own
// fsync, where the Store commits with NORMAL and fsyncs explicitly (Store.durable) where a
// promise is made; bench/README.md says why the baseline keeps FULL. Every statement is
// prepared once. bench/drivers/fsync.mjs measures one of these FULL commits (fsync-p99).
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const require = createRequire(import.meta.url)
const Database = require("better-sqlite3")

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
  const db = new Database(path.join(dir, "baseline.db"), { timeout: 5000 })
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
    received: (id, peer, text, mode) => insertReceived.run(id, peer, text, new Date().toISOString(), mode).changes > 0,
    sent: (id, peer, text, mode) => insertSent.run(id, peer, text, new Date().toISOString(), mode),
    delivered: (id, peer) => setDelivered.run(peer, id),
    /** Trust on first use: true when the key matches the pinned one (pinning it the first time). */
    trust: (username, key) => {
      const row = getPin.get(username)
      if (row === undefined) {
        setPin.run(username, key, new Date().toISOString())
        return true
      }
      return Buffer.compare(row.public_key, key) === 0
    },
    close: () => db.close()
  }
}
