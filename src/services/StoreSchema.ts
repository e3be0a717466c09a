/**
 * The schema of `p2pchat.db`: its steps, the version this program writes, and the
 * migration that brings a file up to it. Opening (StoreOpen.ts) runs `migrate` only once
 * the file is known to be ours (or new).
 */
import type { SqlDb } from "./Sql.ts"
import { CHOOSE_ANOTHER, StoreError } from "./StoreError.ts"

/** "p2pc": marks the file as ours, so a foreign SQLite file is never migrated. */
export const APPLICATION_ID = 0x70327063

/**
 * Schema steps, in order; step i (1-based) brings `user_version` from i-1 to i. Each step
 * runs in its own transaction, so a crash leaves the file at a whole version. Never edit a
 * released step: append a new one.
 */
const migrations: ReadonlyArray<string> = [
  // 1
  `
  CREATE TABLE messages (
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
  CREATE INDEX messages_peer_seq ON messages (peer, seq);
  -- pending messages are looked up each time a peer announces; keep that lookup
  -- independent of the size of the whole history
  CREATE INDEX messages_pending ON messages (peer, seq) WHERE direction = 'sent' AND state = 'pending';
  CREATE TABLE pins (
    username TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    pinned_at TEXT NOT NULL
  );
  CREATE TABLE peers (
    username TEXT PRIMARY KEY,
    display TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    proto TEXT NOT NULL,
    id TEXT,
    status TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    conflict TEXT
  );
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // 2: the key a pinned name last presented in a refused secure session, so that
  // `trust USER` accepts the key the peer proved, not merely the one it announces
  `
  CREATE TABLE presented_keys (
    username TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    presented_at TEXT NOT NULL
  );
  `,
  // 3: whether a saved peer's presence was signed by the key it announces; whether the user
  // compared a pinned key's fingerprint (`trust`) or it was pinned on first use
  `
  ALTER TABLE peers ADD COLUMN signed INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE pins ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
  `,
  // 4: the conversation a message belongs to beyond its peer: NULL for one-to-one, '*all*'
  // for a copy of a broadcast (one row per recipient, all with the broadcast's id; a later
  // '#group' is a conversation too), and for a broadcast received
  `
  ALTER TABLE messages ADD COLUMN conversation TEXT;
  CREATE INDEX messages_conversation ON messages (conversation, seq) WHERE conversation IS NOT NULL;
  `,
  // 5: groups (protocol.md 5.5): the newest signed version of each group this node is in (or
  // was: left_at), its members in order; its messages are in `messages` with conversation
  // '#' and the group id, one row per member's copy
  `
  CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    creator TEXT NOT NULL,
    sig TEXT NOT NULL,
    left_at TEXT,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX groups_name ON groups (name_key);
  CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (group_id, position)
  );
  `,
  // 6: file transfers (protocol.md 9): each offer sent ('out', one row, its recipients in
  // transfer_recipients) or received ('in', one row per sender and id), and its files
  // (transfer_items: the manifest in order, each file's per-chunk CRC-32s; the source read
  // when sending, the .part and the final path when receiving)
  `
  CREATE TABLE transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    peer TEXT NOT NULL,
    peer_name TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('offered', 'receiving', 'paused', 'done', 'failed', 'declined')),
    bytes INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    reason TEXT,
    at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (direction, peer, id)
  );
  CREATE INDEX transfers_state ON transfers (direction, state);
  CREATE INDEX transfers_id ON transfers (id);
  CREATE TABLE transfer_items (
    transfer INTEGER NOT NULL REFERENCES transfers (seq) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    sums BLOB NOT NULL,
    source TEXT,
    mtime_ms REAL,
    part TEXT,
    saved TEXT,
    PRIMARY KEY (transfer, idx)
  );
  CREATE TABLE transfer_recipients (
    transfer INTEGER NOT NULL REFERENCES transfers (seq) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (transfer, name_key)
  );
  `,
  // 7: a sent copy its receiver refused (protocol.md 5.5): the state 'refused', with the
  // receiver's code in `refused`. SQLite cannot change a CHECK in place, so the table is
  // made anew with every row (seq kept, so the order and AUTOINCREMENT's counter stay), and
  // its indexes again
  `
  CREATE TABLE messages_7 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('plain', 'classic-3des', 'noise')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'sent', 'received', 'refused')),
    conversation TEXT,
    refused TEXT CHECK (refused IS NULL OR state = 'refused'),
    UNIQUE (peer, direction, id)
  );
  INSERT INTO messages_7 (seq, id, peer, direction, text, at, mode, state, conversation)
    SELECT seq, id, peer, direction, text, at, mode, state, conversation FROM messages ORDER BY seq;
  UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))
    WHERE name = 'messages_7';
  DROP TABLE messages;
  ALTER TABLE messages_7 RENAME TO messages;
  CREATE INDEX messages_peer_seq ON messages (peer, seq);
  CREATE INDEX messages_pending ON messages (peer, seq) WHERE direction = 'sent' AND state = 'pending';
  CREATE INDEX messages_conversation ON messages (conversation, seq) WHERE conversation IS NOT NULL;
  `
]

/** The schema version this program writes; a file with a higher one is refused. */
export const SCHEMA_VERSION = migrations.length

/** The refusal of a file whose schema is newer than this program's. */
export const newerSchema = (file: string, version: number): StoreError =>
  new StoreError({
    message: `database ${file} has schema version ${version}, newer than this p2pchat knows ` +
      `(${SCHEMA_VERSION}); upgrade p2pchat or ${CHOOSE_ANOTHER}`
  })

/** Brings the file to SCHEMA_VERSION, one step (and one transaction) at a time. */
export const migrate = (db: SqlDb, file: string): void => {
  for (;;) {
    const stepped = db.transaction((): boolean => {
      // re-read inside the write lock: another process may have migrated meanwhile
      const current = db.pragma("user_version", { simple: true }) as number
      if (current > SCHEMA_VERSION) throw newerSchema(file, current)
      if (current === SCHEMA_VERSION) return false
      db.exec(migrations[current]!)
      db.pragma(`application_id = ${APPLICATION_ID}`)
      db.pragma(`user_version = ${current + 1}`)
      return true
    }, "immediate")
    if (!stepped) return
  }
}
