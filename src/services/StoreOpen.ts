/**
 * Opening `p2pchat.db`: the data dir, the file, the checks that refuse it, the connection's
 * settings and the migrations (StoreSchema.ts). Store.ts builds the service on what `open`
 * returns.
 *
 * Opening never modifies a file it refuses: every check that can refuse (not SQLite,
 * damaged, foreign, newer schema) runs before the first write (journal mode, migrations).
 *
 * Everything in the data dir is the user's alone: the dir 0700, its files 0600, whatever the
 * process's umask (bin/p2pchat.js sets 077; tests open stores in-process without it), and
 * no symbolic link inside it is followed (secureDataDir, StoreChecks' checkDbFiles).
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import * as fs from "node:fs"
import * as path from "node:path"
import { openSql, type SqlDb, SqlUnavailable } from "./Sql.ts"
import {
  type Access,
  checkDbFiles,
  dbFiles,
  modeText,
  notADatabase,
  openToOthers,
  ownUid,
  verifyDatabase
} from "./StoreChecks.ts"
import { O_NOFOLLOW } from "./Files.ts"
import { CHOOSE_ANOTHER, errorCode, errorMessage, fsReason, StoreError } from "./StoreError.ts"
import { APPLICATION_ID, migrate } from "./StoreSchema.ts"

export const DB_FILE_NAME = "p2pchat.db"

/** How long a second process on the same data dir (`send` while `start` runs) waits for a lock. */
export const BUSY_TIMEOUT_MS = 5000

/**
 * Turns whatever opening `file` in `dir` threw into a StoreError a user can act on. A
 * read-only opening (StoreRead.ts) writes and creates nothing, so the failures only writing
 * meets (not writable, cannot create, disk full) are not looked for there.
 */
export const toStoreError = (dir: string, file: string, e: unknown, access: Access): StoreError => {
  if (e instanceof StoreError) return e
  // no SQLite backend on this runtime: its message says what to install or use
  if (e instanceof SqlUnavailable) return new StoreError({ message: `cannot open database ${file}: ${e.message}` })
  const code = errorCode(e)
  const msg = errorMessage(e)
  const writing = access === "read-write"
  if (code.startsWith("SQLITE_NOTADB") || code.startsWith("SQLITE_CORRUPT")) {
    return notADatabase(file, msg)
  }
  if (writing && (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_PERM") || code.startsWith("SQLITE_AUTH"))) {
    return new StoreError({
      message: `database ${file} is not writable (${msg}); fix the permissions of ${file} and ${dir}, or ${CHOOSE_ANOTHER}`
    })
  }
  if (writing && code.startsWith("SQLITE_CANTOPEN")) {
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
  if (writing && code.startsWith("SQLITE_FULL")) {
    return new StoreError({ message: `cannot open database ${file}: the disk is full (${msg}); free some space` })
  }
  return new StoreError({ message: `cannot ${writing ? "open" : "read"} database ${file}: ${msg}${code ? ` (${code})` : ""}` })
}

/**
 * One info line about something p2pchat fixed on its own. It goes through the running
 * program's logger (the roles' stderr logger, at the chosen level). A command that installed
 * none (`whoami`) would get Effect's default logger, which prints on stdout among the
 * command's output (`--json`), so then, as outside any fiber, the line goes to stderr in the
 * same format.
 */
export const logInfo = (message: string): void => {
  const fiber = Fiber.getCurrent()
  if (fiber !== undefined && !fiber.getRef(References.CurrentLoggers).has(Logger.defaultLogger)) {
    return Effect.runSyncWith(fiber.context)(Effect.logInfo(message))
  }
  if (fiber === undefined || LogLevel.isGreaterThanOrEqualTo("Info", fiber.getRef(References.MinimumLogLevel))) {
    process.stderr.write(`p2pchat [info] ${message}\n`)
  }
}

/** Creates the data dir (0700) when missing; throws a StoreError when that is not possible. */
const createDataDir = (dir: string): void => {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw new StoreError({
      message: `cannot create data directory ${dir} (${fsReason(e)}); ${CHOOSE_ANOTHER}`
    })
  }
}

/**
 * The data dir must be the user's alone (0700). An existing one open to group or others is
 * made private when the user owns it, and refused otherwise (another user could read the
 * history and key, or swap files under p2pchat). The data dir may be a symbolic link (to
 * keep it on another disk), but only to a directory the user owns: the link names where
 * the data lives, and that place must be as private as a directory p2pchat made itself.
 */
const checkOwnership = (dir: string, link: fs.Stats, stat: fs.Stats): void => {
  const uid = ownUid()
  if (uid === undefined) return
  if (link.isSymbolicLink() && stat.uid !== uid) {
    throw new StoreError({
      message: `data directory ${dir} is a symbolic link to ${fs.realpathSync(dir)}, which is owned by another ` +
        `user (uid ${stat.uid}); a linked data dir must be a directory of yours; ${CHOOSE_ANOTHER}`
    })
  }
  if (!openToOthers(stat)) return
  if (stat.uid !== uid) {
    throw new StoreError({
      message: `data directory ${dir} is open to other users (mode ${modeText(stat)}) and owned by another ` +
        `user (uid ${stat.uid}), so p2pchat cannot make it private; ${CHOOSE_ANOTHER}`
    })
  }
  try {
    fs.chmodSync(dir, 0o700)
  } catch (e) {
    throw new StoreError({
      message: `data directory ${dir} is open to other users (mode ${modeText(stat)}) and cannot be made ` +
        `private (${fsReason(e)}); run chmod 700 on it or ${CHOOSE_ANOTHER}`
    })
  }
  logInfo(`data directory ${dir} was open to other users (mode ${modeText(stat)}); it is now 0700`)
}

/**
 * Makes sure the data dir exists, is a directory (or a link to one of the user's), is private
 * (0700: created so, fixed or refused, see checkOwnership) and writable. Throws a StoreError
 * that says what to do. The Store and the identity key (Crypto.ts) both start here.
 */
export const secureDataDir = (dir: string): void => {
  createDataDir(dir)
  let link: fs.Stats
  let stat: fs.Stats
  try {
    link = fs.lstatSync(dir)
    stat = link.isSymbolicLink() ? fs.statSync(dir) : link
  } catch (e) {
    throw new StoreError({ message: `cannot read data directory ${dir} (${fsReason(e)}); ${CHOOSE_ANOTHER}` })
  }
  if (!stat.isDirectory()) {
    throw new StoreError({ message: `data directory ${dir} exists but is not a directory; ${CHOOSE_ANOTHER}` })
  }
  checkOwnership(dir, link, stat)
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

/** Closes the existing database files to group and others (0600); says so once when it changed any. */
const makeDbFilesPrivate = (file: string): void => {
  if (ownUid() === undefined) return
  const fixed: Array<string> = []
  for (const f of dbFiles(file)) {
    const stat = fs.statSync(f, { throwIfNoEntry: false })
    if (stat === undefined || !openToOthers(stat)) continue
    fs.chmodSync(f, 0o600)
    fixed.push(`${path.basename(f)} (was ${modeText(stat)})`)
  }
  if (fixed.length > 0) logInfo(`made ${fixed.join(", ")} in ${path.dirname(file)} private to you (0600)`)
}

/**
 * A new database starts as an empty file of mode 0600, made here before SQLite opens it
 * (SQLite gives its -wal and -shm the mode of the database), never through a link.
 */
const createDbFile = (file: string): void => {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | O_NOFOLLOW, 0o600)
  } catch (e) {
    if (errorCode(e) === "EEXIST") return // made meanwhile by another p2pchat: checked by SQLite's open
    throw e
  }
  fs.closeSync(fd)
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
    verifyDatabase(readOnly, file)
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
    secureDataDir(dir)
    checkDbFiles(file, "read-write")
  } catch (e) {
    throw toStoreError(dir, file, e, "read-write")
  }
  // A file that is not marked as ours is checked on a read-only connection first: closing
  // a read-write connection would checkpoint a foreign program's WAL into its database.
  try {
    if (!headerSaysOurs(file)) verifyReadOnly(file)
    // known to be ours, or empty, or missing: its modes may be fixed, a missing one made
    makeDbFilesPrivate(file)
    createDbFile(file)
  } catch (e) {
    throw toStoreError(dir, file, e, "read-write")
  }
  let db: SqlDb
  try {
    // the busy timeout, also set by PRAGMA below
    db = openSql(file, { timeoutMs: BUSY_TIMEOUT_MS })
  } catch (e) {
    throw toStoreError(dir, file, e, "read-write")
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    verifyDatabase(db, file)
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
    // -wal and -shm exist now; SQLite gave them the database's mode, checked all the same
    makeDbFilesPrivate(file)
    const changes = db.prepare<[], { n: number }>("SELECT total_changes() AS n")
    return { db, file, totalChanges: () => changes.get()!.n }
  } catch (e) {
    try {
      db.close()
    } catch {
      // already failing; the original error is the one to report
    }
    throw toStoreError(dir, file, e, "read-write")
  }
}
