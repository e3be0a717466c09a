/**
 * Opening `p2pchat.db`: the data dir, the file, the checks that refuse it, the connection's
 * settings and the migrations (StoreSchema.ts). Store.ts builds the service on what `open`
 * returns.
 *
 * Opening never modifies a file it refuses: every check that can refuse (not SQLite,
 * damaged, foreign, newer schema) runs before the first write (journal mode, migrations).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { openSql, type SqlDb, SqlUnavailable } from "./Sql.ts"
import { CHOOSE_ANOTHER, errorCode, errorMessage, StoreError } from "./StoreError.ts"
import { APPLICATION_ID, migrate, newerSchema, SCHEMA_VERSION } from "./StoreSchema.ts"

export const DB_FILE_NAME = "p2pchat.db"

/** How long a second process on the same data dir (`send` while `start` runs) waits for a lock. */
export const BUSY_TIMEOUT_MS = 5000

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`

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
  // no SQLite backend on this runtime: its message says what to install or use
  if (e instanceof SqlUnavailable) return new StoreError({ message: `cannot open database ${file}: ${e.message}` })
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
const verifyIdentity = (db: SqlDb, file: string): void => {
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
  if (version > SCHEMA_VERSION) throw newerSchema(file, version)
  const check = db.pragma("quick_check") as ReadonlyArray<{ readonly quick_check: string }>
  const problems = check.map((row) => row.quick_check).filter((s) => s !== "ok")
  if (problems.length > 0) {
    throw notADatabase(file, `quick_check: ${problems.slice(0, 3).join("; ")}`)
  }
}

/**
 * A read-only file (or file system) opens without complaint and fails only at the first
 * write; find out now, while the error can still name the file. The write is rolled back.
 */
const probeWritable = (db: SqlDb): void => {
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
  const readOnly = openSql(file, { readonly: true, fileMustExist: true, timeoutMs: BUSY_TIMEOUT_MS })
  try {
    verifyIdentity(readOnly, file)
  } finally {
    readOnly.close()
    for (const f of sideFiles) if (fs.existsSync(f) && (!f.endsWith("-wal") || fs.statSync(f).size === 0)) fs.rmSync(f)
  }
}

export interface Opened {
  readonly db: SqlDb
  readonly file: string
  /** Rows this connection has inserted, updated or deleted since it opened (SQLite's total_changes()). */
  readonly totalChanges: () => number
}

/**
 * Creates the data dir if missing, refuses a file p2pchat must not touch, and opens,
 * configures and migrates the database. Throws a StoreError that says what to do.
 */
export const open = (dataDir: string): Opened => {
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
  let db: SqlDb
  try {
    // the busy timeout, also set by PRAGMA below
    db = openSql(file, { timeoutMs: BUSY_TIMEOUT_MS })
  } catch (e) {
    throw toStoreError(dir, file, e)
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    verifyIdentity(db, file)
    // From here on the file is known to be ours (or new): writing is allowed.
    db.pragma("journal_mode = WAL")
    // NORMAL, not FULL: a commit appends to the WAL without waiting for an fsync (the
    // event loop would wait with it: both SQLite backends are synchronous). It survives a
    // killed process at once, and a power cut once `durable` has fsynced the WAL; the
    // callers call `durable` before they promise anything (an ack, "delivered"). See Store.ts.
    db.pragma("synchronous = NORMAL")
    db.pragma("foreign_keys = ON")
    migrate(db, file)
    probeWritable(db)
    const changes = db.prepare<[], { n: number }>("SELECT total_changes() AS n")
    return { db, file, totalChanges: () => changes.get()!.n }
  } catch (e) {
    try {
      db.close()
    } catch {
      // already failing; the original error is the one to report
    }
    throw toStoreError(dir, file, e)
  }
}
