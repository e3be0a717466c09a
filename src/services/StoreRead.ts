/**
 * The data dir read, never written: what `peers`, `whoami`, `history`, `stats` and
 * `config get` use (cli.md "Which commands need a running node"). They create nothing, not
 * even the data dir, and work on a data dir the user made read-only (chmod 555, files 444).
 *
 * SQLite reads a WAL database only with its `-shm` index beside it, which a read-only
 * connection creates when it is missing (and leaves behind), or fails to where the
 * directory is not writable. So:
 *  - with `-shm` there (a node runs on the data dir, or one was killed), the database is
 *    read in place, read-only: SQLite shares that node's index;
 *  - without it (no node has the database open), the database (and a `-wal`, if one was
 *    left) is copied into a private temp dir and the copy is read, then removed. The copy
 *    of an older schema is brought up to date there; the original is never touched.
 *
 * Before anything is opened, the same refusals as StoreOpen.ts: symbolic links and
 * non-files in the data dir; after, a database that is not p2pchat's, damaged, or newer.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fingerprint } from "../domain/Fingerprint.ts"
import { publicKeyOf } from "../domain/Noise.ts"
import { CryptoError, IDENTITY_FILE, keyId } from "./Crypto.ts"
import { openSql, type SqlDb, SqlUnavailable } from "./Sql.ts"
import type { StoreShape } from "./Store.ts"
import { CHOOSE_ANOTHER, errorCode, errorMessage, StoreError } from "./StoreError.ts"
import { BUSY_TIMEOUT_MS, DB_FILE_NAME, modeText, O_NOFOLLOW } from "./StoreOpen.ts"
import { APPLICATION_ID, migrate, newerSchema, SCHEMA_VERSION } from "./StoreSchema.ts"

/** What a read-only command says at a data dir that does not exist. */
export const noDataDir = (dir: string): string =>
  `no p2pchat data dir at ${dir} (start a node there first, or check --data-dir)`

/** Fails unless `dir` is an existing directory (or a link to one): a read-only command creates none. */
export const requireDataDir = (dir: string): Effect.Effect<void, StoreError> =>
  Effect.suspend(() => {
    let stat: fs.Stats | undefined
    try {
      stat = fs.statSync(dir, { throwIfNoEntry: false })
    } catch (e) {
      const why = errorCode(e) === "ENOTDIR" ? "a part of the path is a file, not a directory" : errorMessage(e)
      return Effect.fail(new StoreError({ message: `cannot use data directory ${dir}: ${why}; ${CHOOSE_ANOTHER}` }))
    }
    if (stat === undefined) return Effect.fail(new StoreError({ message: noDataDir(dir) }))
    if (!stat.isDirectory()) {
      return Effect.fail(new StoreError({ message: `data directory ${dir} exists but is not a directory; ${CHOOSE_ANOTHER}` }))
    }
    return Effect.void
  })

const notADatabase = (file: string, detail: string) =>
  new StoreError({
    message: `database ${file} is not a SQLite database or is damaged (${detail}); ` +
      `move it away (p2pchat then starts a new one) or ${CHOOSE_ANOTHER}`
  })

/** Refuses a database file (or -wal, -shm) that is a symbolic link or not a regular file; tells whether each exists. */
const checkFiles = (file: string): { readonly db: fs.Stats | undefined; readonly wal: boolean; readonly shm: boolean } => {
  const stats = [file, `${file}-wal`, `${file}-shm`].map((f) => {
    const stat = fs.lstatSync(f, { throwIfNoEntry: false })
    if (stat?.isSymbolicLink()) {
      throw new StoreError({
        message: `database file ${f} is a symbolic link (to ${fs.readlinkSync(f)}); p2pchat follows no links ` +
          `inside its data dir: move the link away (and the file it points to in its place) or ${CHOOSE_ANOTHER}`
      })
    }
    if (stat !== undefined && !stat.isFile()) {
      throw new StoreError({ message: `database file ${f} is not a regular file; move it away or ${CHOOSE_ANOTHER}` })
    }
    return stat
  })
  return { db: stats[0], wal: stats[1] !== undefined, shm: stats[2] !== undefined }
}

/** The checks of StoreOpen.ts on an open connection: p2pchat's, not newer, not damaged. "empty" for a new file. */
const verify = (db: SqlDb, file: string): "ok" | "older" | "empty" => {
  const appId = db.pragma("application_id", { simple: true }) as number
  const version = db.pragma("user_version", { simple: true }) as number
  const objects = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM sqlite_schema").get()?.n ?? 0
  if (appId !== APPLICATION_ID && (appId !== 0 || objects > 0)) {
    throw new StoreError({
      message: `database ${file} is not a p2pchat database (application_id 0x${(appId >>> 0).toString(16).padStart(8, "0")}, ` +
        `${objects} schema objects); move it away or ${CHOOSE_ANOTHER}`
    })
  }
  if (version > SCHEMA_VERSION) throw newerSchema(file, version)
  const problems = (db.pragma("quick_check") as ReadonlyArray<{ readonly quick_check: string }>)
    .map((row) => row.quick_check).filter((s) => s !== "ok")
  if (problems.length > 0) throw notADatabase(file, `quick_check: ${problems.slice(0, 3).join("; ")}`)
  if (version === 0 && objects === 0) return "empty"
  return version < SCHEMA_VERSION ? "older" : "ok"
}

/** What opening threw, as a StoreError that names the file. */
const toStoreError = (file: string, e: unknown): StoreError => {
  if (e instanceof StoreError) return e
  if (e instanceof SqlUnavailable) return new StoreError({ message: `cannot open database ${file}: ${e.message}` })
  const code = errorCode(e)
  if (code.startsWith("SQLITE_NOTADB") || code.startsWith("SQLITE_CORRUPT")) return notADatabase(file, errorMessage(e))
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new StoreError({
      message: `database ${file} stayed locked by another process for ${BUSY_TIMEOUT_MS / 1000} s (${errorMessage(e)}); ` +
        `stop the other p2pchat using ${path.dirname(file)}, or ${CHOOSE_ANOTHER}`
    })
  }
  return new StoreError({ message: `cannot read database ${file}: ${errorMessage(e)}${code ? ` (${code})` : ""}` })
}

interface ReadOnly {
  readonly db: SqlDb
  readonly close: () => void
}

/** The database read in place, read-only, beside the node whose `-shm` is there. */
const inPlace = (file: string, walExisted: boolean): ReadOnly => {
  const db = openSql(file, { readonly: true, fileMustExist: true, timeoutMs: BUSY_TIMEOUT_MS })
  const close = () => {
    if (db.isOpen) db.close()
    // a -wal SQLite made for this reader (empty) is not left behind
    const wal = `${file}-wal`
    if (!walExisted && fs.statSync(wal, { throwIfNoEntry: false })?.size === 0) fs.rmSync(wal, { force: true })
  }
  try {
    const state = verify(db, file)
    if (state === "older") {
      throw new StoreError({
        message: `database ${file} has an older schema and a node seems to have it open; ` +
          `stop that node and start it again to bring the database up to date`
      })
    }
    return { db, close }
  } catch (e) {
    close()
    throw e
  }
}

/** A private copy of the database (and its -wal), read and then removed: nothing is made in the data dir. */
const viaCopy = (file: string, walExists: boolean): ReadOnly => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-read-"))
  const copy = path.join(tmp, DB_FILE_NAME)
  let db: SqlDb | undefined
  const close = () => {
    if (db?.isOpen) db.close()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  try {
    fs.copyFileSync(file, copy)
    if (walExists) fs.copyFileSync(`${file}-wal`, `${copy}-wal`)
    // the copy is ours to write (a 0444 original gives a 0444 copy), in a dir only we can enter
    for (const f of [copy, `${copy}-wal`]) if (fs.existsSync(f)) fs.chmodSync(f, 0o600)
    db = openSql(copy, { fileMustExist: true, timeoutMs: BUSY_TIMEOUT_MS })
    // checked as the original: its name in every message
    if (verify(db, file) === "older") migrate(db, file)
    return { db, close }
  } catch (e) {
    close()
    throw e
  }
}

/**
 * The data dir's database, read-only, or undefined when there is none yet (no file, or an
 * empty one). Fails with a StoreError that says what to do, like StoreOpen's `open`.
 */
export const openReadOnly = (dataDir: string): Effect.Effect<StoreShape | undefined, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = path.resolve(dataDir)
    yield* requireDataDir(dir)
    const file = path.join(dir, DB_FILE_NAME)
    const opened = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const files = checkFiles(file)
          if (files.db === undefined || files.db.size === 0) return undefined
          return files.shm ? inPlace(file, files.wal) : viaCopy(file, files.wal)
        },
        catch: (e) => toStoreError(file, e)
      }),
      (r) => Effect.sync(() => r?.close())
    )
    if (opened === undefined) return undefined
    return {
      db: opened.db,
      file,
      // nothing is written, so nothing is ever to be made durable
      durable: Effect.void,
      fsyncs: Effect.succeed(0)
    } satisfies StoreShape
  })

/** Who this data dir is: its identity key's id and fingerprint, read only. */
export interface ReadIdentity {
  readonly id: string
  readonly fingerprint: string
}

const keyRefused = (file: string, problem: string) =>
  new CryptoError({
    message: `identity key ${file} ${problem}; p2pchat does not use it: put the key file itself in its place, ` +
      `or move it away to make a new identity (peers will see a changed key), or choose another --data-dir`
  })

/**
 * The identity of the data dir, or undefined when it has none yet (a node makes it on its
 * first start). Refuses what Crypto.ts refuses (a link, not a file, another user's key open
 * to others, a damaged key) but fixes nothing: a key open to others is read as it is.
 */
export const readIdentity = (dataDir: string): Effect.Effect<ReadIdentity | undefined, CryptoError> =>
  Effect.try({
    try: () => {
      const file = path.join(dataDir, IDENTITY_FILE)
      const link = fs.lstatSync(file, { throwIfNoEntry: false })
      if (link === undefined) return undefined
      if (link.isSymbolicLink()) throw keyRefused(file, `is a symbolic link (to ${fs.readlinkSync(file)})`)
      if (!link.isFile()) throw keyRefused(file, "is not a regular file")
      const uid = process.getuid?.()
      if (uid !== undefined && (link.mode & 0o077) !== 0 && link.uid !== uid) {
        throw keyRefused(file, `is readable by others (mode ${modeText(link)}) and owned by another user (uid ${link.uid})`)
      }
      const fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW)
      let bytes: Buffer
      try {
        bytes = fs.readFileSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      if (bytes.length !== 32) {
        throw new CryptoError({
          message: `identity key ${file} is damaged (${bytes.length} bytes, expected 32); ` +
            `restore it from a backup, or move it away to make a new identity (peers will see a changed key)`
        })
      }
      const publicKey = publicKeyOf(new Uint8Array(bytes))
      return { id: keyId(publicKey), fingerprint: fingerprint(publicKey) }
    },
    catch: (e) =>
      e instanceof CryptoError ? e : new CryptoError({ message: `cannot read the identity key in ${dataDir}: ${errorMessage(e)}` })
  })
