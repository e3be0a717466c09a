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
 * Before anything is opened, the refusals StoreOpen.ts makes too (StoreChecks.ts): symbolic
 * links and non-files in the data dir; after, a database that is not p2pchat's, damaged, or
 * newer. The identity key is read as Crypto.ts reads it, but never fixed.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fingerprint } from "../domain/Fingerprint.ts"
import { publicKeyOf } from "../domain/Noise.ts"
import { CryptoError, IDENTITY_FILE, keyId, readKeyFile } from "./Crypto.ts"
import { openSql, type SqlDb } from "./Sql.ts"
import type { StoreShape } from "./Store.ts"
import { checkDbFiles, verifyDatabase } from "./StoreChecks.ts"
import { CHOOSE_ANOTHER, errorCode, errorMessage, StoreError } from "./StoreError.ts"
import { BUSY_TIMEOUT_MS, DB_FILE_NAME, toStoreError } from "./StoreOpen.ts"
import { migrate } from "./StoreSchema.ts"

/** What a read-only command says at a data dir that does not exist. */
export const noDataDir = (dir: string): string =>
  `no p2pchat data dir at ${dir} (start a node there first, or check --data-dir)`

/** Whether the nearest existing ancestor of `dir` is not a directory. */
const underAFile = (dir: string): boolean => {
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    const stat = fs.statSync(p, { throwIfNoEntry: false })
    if (stat !== undefined) return !stat.isDirectory()
    if (path.dirname(p) === p) return false
  }
}

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
    if (stat === undefined) {
      // Node 24 and later answer "no entry" (not ENOTDIR) for a path under a regular file
      return Effect.fail(new StoreError({
        message: underAFile(dir)
          ? `cannot use data directory ${dir}: a part of the path is a file, not a directory; ${CHOOSE_ANOTHER}`
          : noDataDir(dir)
      }))
    }
    if (!stat.isDirectory()) {
      return Effect.fail(new StoreError({ message: `data directory ${dir} exists but is not a directory; ${CHOOSE_ANOTHER}` }))
    }
    return Effect.void
  })

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
    const state = verifyDatabase(db, file)
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
    if (verifyDatabase(db, file) === "older") migrate(db, file)
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
          const files = checkDbFiles(file, "read-only")
          if (files.db === undefined || files.db.size === 0) return undefined
          return files.shm ? inPlace(file, files.wal) : viaCopy(file, files.wal)
        },
        catch: (e) => toStoreError(dir, file, e, "read-only")
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

/**
 * The identity of the data dir, or undefined when it has none yet (a node makes it on its
 * first start). Refuses what Crypto.ts refuses (a link, not a file, another user's key open
 * to others, a damaged key) but fixes nothing: a key open to others is read as it is.
 */
export const readIdentity = (dataDir: string): Effect.Effect<ReadIdentity | undefined, CryptoError> =>
  Effect.try({
    try: () => {
      const key = readKeyFile(path.join(dataDir, IDENTITY_FILE), "read-only")
      if (key === undefined) return undefined
      const publicKey = publicKeyOf(key)
      return { id: keyId(publicKey), fingerprint: fingerprint(publicKey) }
    },
    catch: (e) =>
      e instanceof CryptoError ? e : new CryptoError({ message: `cannot read the identity key in ${dataDir}: ${errorMessage(e)}` })
  })
