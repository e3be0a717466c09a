/**
 * The one SQLite database of a node (`p2pchat.db` in the data dir). History and the peer
 * registry snapshot share it; this module owns the file, its settings and its schema.
 *
 * Opening never modifies a file it refuses: every check that can refuse (not SQLite,
 * damaged, foreign, newer schema) runs before the first write (journal mode, migrations).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

export class StoreError extends Data.TaggedError("StoreError")<{ readonly message: string }> {}

export class Store extends Context.Service<Store, {
  readonly db: Database.Database
  readonly file: string
}>()("p2pchat/Store") {}

export const DB_FILE_NAME = "p2pchat.db"

/** "p2pc": marks the file as ours, so a foreign SQLite file is never migrated. */
export const APPLICATION_ID = 0x70327063

/** How long a second process on the same data dir (`send` while `start` runs) waits for a lock. */
export const BUSY_TIMEOUT_MS = 5000

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
  `
]

/** The schema version this program writes; a file with a higher one is refused. */
export const SCHEMA_VERSION = migrations.length

const CHOOSE_ANOTHER = "choose another --data-dir"

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`

/** The `code` of a SqliteError (SQLITE_…) or a Node system error (ENOTDIR…). */
const errorCode = (e: unknown): string =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : ""

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** A file system error in words, for paths the user chose. */
const fsReason = (e: unknown): string => {
  const code = errorCode(e)
  switch (code) {
    case "ENOTDIR":
      return "ENOTDIR: a part of the path is a file, not a directory"
    case "EEXIST":
      return "EEXIST: it exists and is not a directory"
    case "EACCES":
    case "EPERM":
      return `${code}: permission denied`
    case "EROFS":
      return "EROFS: read-only file system"
    case "ENOSPC":
      return "ENOSPC: no space left on device"
    default:
      return code || errorMessage(e)
  }
}

/** Turns whatever opening threw into a StoreError a user can act on. */
const toStoreError = (dir: string, file: string, e: unknown): StoreError => {
  if (e instanceof StoreError) return e
  const code = errorCode(e)
  const msg = errorMessage(e)
  if (code.startsWith("SQLITE_NOTADB") || code.startsWith("SQLITE_CORRUPT")) {
    return notADatabase(file, msg)
  }
  if (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_PERM") || code.startsWith("SQLITE_AUTH")) {
    return new StoreError({
      message: `database ${file} is not writable (${msg}); fix the permissions of ${file} and ${dir}, or ${CHOOSE_ANOTHER}`
    })
  }
  if (code.startsWith("SQLITE_CANTOPEN")) {
    return new StoreError({
      message: `cannot open database ${file} (${msg}); check that ${dir} is a writable directory, or ${CHOOSE_ANOTHER}`
    })
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new StoreError({
      message: `database ${file} stayed locked by another process for ${BUSY_TIMEOUT_MS / 1000} s (${msg}); ` +
        `stop the other p2pchat using ${dir}, or ${CHOOSE_ANOTHER}`
    })
  }
  if (code.startsWith("SQLITE_FULL")) {
    return new StoreError({ message: `cannot open database ${file}: the disk is full (${msg}); free some space` })
  }
  return new StoreError({ message: `cannot open database ${file}: ${msg}${code ? ` (${code})` : ""}` })
}

const notADatabase = (file: string, detail: string) =>
  new StoreError({
    message: `database ${file} is not a SQLite database or is damaged (${detail}); ` +
      `move it away (p2pchat then starts a new one) or ${CHOOSE_ANOTHER}`
  })

const ensureDataDir = (dir: string): void => {
  try {
    // mode applies only to directories created now: an existing dir keeps the user's choice
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw new StoreError({
      message: `cannot create data directory ${dir} (${fsReason(e)}); ${CHOOSE_ANOTHER}`
    })
  }
  let stat: fs.Stats
  try {
    stat = fs.statSync(dir)
  } catch (e) {
    throw new StoreError({ message: `cannot read data directory ${dir} (${fsReason(e)}); ${CHOOSE_ANOTHER}` })
  }
  if (!stat.isDirectory()) {
    throw new StoreError({ message: `data directory ${dir} exists but is not a directory; ${CHOOSE_ANOTHER}` })
  }
  try {
    // WAL needs to create p2pchat.db-wal and -shm next to the database
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK)
  } catch (e) {
    throw new StoreError({
      message: `data directory ${dir} is not writable (${fsReason(e)}); ` +
        `fix its permissions or ${CHOOSE_ANOTHER}`
    })
  }
}

const ensureFileWritable = (file: string): void => {
  if (!fs.existsSync(file)) return
  try {
    fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK)
  } catch (e) {
    throw new StoreError({
      message: `database ${file} is not readable and writable (${fsReason(e)}); ` +
        `fix its permissions or ${CHOOSE_ANOTHER}`
    })
  }
  if (!fs.statSync(file).isFile()) {
    throw new StoreError({ message: `database ${file} is not a regular file; move it away or ${CHOOSE_ANOTHER}` })
  }
}

/** Read-only checks: throws a StoreError for a file p2pchat must not touch. */
const verifyIdentity = (db: Database.Database, file: string): void => {
  // the first read of the header: a non-SQLite file fails here with SQLITE_NOTADB
  const appId = db.pragma("application_id", { simple: true }) as number
  const version = db.pragma("user_version", { simple: true }) as number
  const objects = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM sqlite_schema").get()?.n ?? 0
  if (appId !== APPLICATION_ID && (appId !== 0 || objects > 0)) {
    throw new StoreError({
      message: `database ${file} is not a p2pchat database (application_id ${hex(appId)}, ` +
        `${objects} schema objects); move it away or ${CHOOSE_ANOTHER}`
    })
  }
  if (version > SCHEMA_VERSION) {
    throw new StoreError({
      message: `database ${file} has schema version ${version}, newer than this p2pchat knows ` +
        `(${SCHEMA_VERSION}); upgrade p2pchat or ${CHOOSE_ANOTHER}`
    })
  }
  const check = db.pragma("quick_check") as ReadonlyArray<{ quick_check: string }>
  const problems = check.map((row) => row.quick_check).filter((s) => s !== "ok")
  if (problems.length > 0) {
    throw notADatabase(file, `quick_check: ${problems.slice(0, 3).join("; ")}`)
  }
}

const migrate = (db: Database.Database, file: string): void => {
  for (;;) {
    const step = db.transaction((): boolean => {
      // re-read inside the write lock: another process may have migrated meanwhile
      const current = db.pragma("user_version", { simple: true }) as number
      if (current > SCHEMA_VERSION) {
        throw new StoreError({
          message: `database ${file} has schema version ${current}, newer than this p2pchat knows ` +
            `(${SCHEMA_VERSION}); upgrade p2pchat or ${CHOOSE_ANOTHER}`
        })
      }
      if (current === SCHEMA_VERSION) return false
      db.exec(migrations[current]!)
      db.pragma(`application_id = ${APPLICATION_ID}`)
      db.pragma(`user_version = ${current + 1}`)
      return true
    })
    if (!step.immediate()) return
  }
}

/**
 * A read-only file (or file system) opens without complaint and fails only at the first
 * write; find out now, while the error can still name the file. The write is rolled back.
 */
const probeWritable = (db: Database.Database): void => {
  try {
    db.exec("BEGIN IMMEDIATE; DELETE FROM meta WHERE 0")
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK")
  }
}

/** True when the file's SQLite header carries our application_id (offset 68, big-endian). */
const headerSaysOurs = (file: string): boolean => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const header = Buffer.alloc(100)
    return fs.readSync(fd, header, 0, 100, 0) === 100 &&
      header.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000" &&
      header.readUInt32BE(68) === APPLICATION_ID
  } catch {
    return false
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * The identity checks on a read-only connection, for an existing file not marked as ours.
 * SQLite may create the -wal and -shm side files to read a WAL database; those it created
 * are removed again, so a refused file is left exactly as it was.
 */
const verifyReadOnly = (file: string): void => {
  if (!fs.existsSync(file) || fs.statSync(file).size === 0) return
  const sideFiles = [`${file}-wal`, `${file}-shm`].filter((f) => !fs.existsSync(f))
  const readOnly = new Database(file, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS })
  try {
    verifyIdentity(readOnly, file)
  } finally {
    readOnly.close()
    for (const f of sideFiles) if (fs.existsSync(f) && (!f.endsWith("-wal") || fs.statSync(f).size === 0)) fs.rmSync(f)
  }
}

const open = (dataDir: string): { readonly db: Database.Database; readonly file: string } => {
  const dir = path.resolve(dataDir)
  const file = path.join(dir, DB_FILE_NAME)
  try {
    ensureDataDir(dir)
    ensureFileWritable(file)
  } catch (e) {
    throw toStoreError(dir, file, e)
  }
  // A file that is not marked as ours is checked on a read-only connection first: closing
  // a read-write connection would checkpoint a foreign program's WAL into its database.
  try {
    if (!headerSaysOurs(file)) verifyReadOnly(file)
  } catch (e) {
    throw toStoreError(dir, file, e)
  }
  let db: Database.Database
  try {
    // the busy timeout, also set by PRAGMA below (better-sqlite3's own default happens to match)
    db = new Database(file, { timeout: BUSY_TIMEOUT_MS })
  } catch (e) {
    throw toStoreError(dir, file, e)
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    verifyIdentity(db, file)
    // From here on the file is known to be ours (or new): writing is allowed.
    db.pragma("journal_mode = WAL")
    // FULL, not WAL's usual NORMAL: with NORMAL a commit is durable only after the next
    // checkpoint, and a power cut may lose the last transactions. An ack tells the sender
    // the message is stored, so the commit must be on disk (WAL fsynced) before the ack.
    db.pragma("synchronous = FULL")
    db.pragma("foreign_keys = ON")
    migrate(db, file)
    probeWritable(db)
    return { db, file }
  } catch (e) {
    try {
      db.close()
    } catch {
      // already failing; the original error is the one to report
    }
    throw toStoreError(dir, file, e)
  }
}

/**
 * The Store of a data dir: creates the dir (mode 0700) if missing, opens and checks the
 * database, migrates it, and closes it when the layer's scope closes.
 */
export const storeLayer = (dataDir: string): Layer.Layer<Store, StoreError> =>
  Layer.effect(
    Store,
    Effect.acquireRelease(
      Effect.try({
        try: () => open(dataDir),
        catch: (e) =>
          e instanceof StoreError
            ? e
            : new StoreError({ message: `cannot open database in ${dataDir}: ${errorMessage(e)}` })
      }),
      ({ db }) =>
        Effect.sync(() => {
          if (db.open) db.close()
        })
    )
  )
