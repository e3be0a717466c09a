/**
 * The checks that refuse a data dir's database, before it is opened (its files) and after
 * (its contents). One set of rules for both ways in: StoreOpen.ts, which opens the database
 * to write, and StoreRead.ts, which only reads it and so refuses less (a file need not be
 * writable, nor be closed to others, to be read). Crypto.ts judges the key file by the same
 * modes.
 */
import * as fs from "node:fs"
import type { SqlDb } from "./Sql.ts"
import { CHOOSE_ANOTHER, fsReason, StoreError } from "./StoreError.ts"
import { APPLICATION_ID, newerSchema, SCHEMA_VERSION } from "./StoreSchema.ts"

/** How the data dir is used: by a node or `send`, which write, or by a read-only command (StoreRead.ts). */
export type Access = "read-write" | "read-only"

/** The user's uid; undefined where files have no owner and mode bits (Windows): nothing to check there. */
export const ownUid = (): number | undefined => process.getuid?.()

/** Group or others may do something: read, write, or enter. */
export const openToOthers = (stat: fs.Stats): boolean => (stat.mode & 0o077) !== 0

export const modeText = (stat: fs.Stats): string => (stat.mode & 0o777).toString(8).padStart(4, "0")

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`

export const notADatabase = (file: string, detail: string): StoreError =>
  new StoreError({
    message: `database ${file} is not a SQLite database or is damaged (${detail}); ` +
      `move it away (p2pchat then starts a new one) or ${CHOOSE_ANOTHER}`
  })

/** The database and the side files SQLite keeps next to it in WAL mode. */
export const dbFiles = (file: string): ReadonlyArray<string> => [file, `${file}-wal`, `${file}-shm`]

const ensureFileWritable = (file: string, stat: fs.Stats): void => {
  try {
    fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK)
  } catch (e) {
    throw new StoreError({
      message: `database ${file} is not readable and writable (${fsReason(e)}); ` +
        `fix its permissions or ${CHOOSE_ANOTHER}`
    })
  }
  if (!stat.isFile()) {
    throw new StoreError({ message: `database ${file} is not a regular file; move it away or ${CHOOSE_ANOTHER}` })
  }
}

/** Which of the database's files exist: the database's own stat, undefined when it is missing. */
export interface DbFiles {
  readonly db: fs.Stats | undefined
  readonly wal: boolean
  readonly shm: boolean
}

/**
 * Refuses a database (or -wal, -shm) that is a symbolic link (SQLite would read and write
 * wherever it points) or not a regular file; to write, also a database that is not readable
 * and writable, and a file open to other users while another user owns it. Only looks:
 * runs before anything is opened, and before the checks of the contents.
 */
export const checkDbFiles = (file: string, access: Access): DbFiles => {
  const stats = dbFiles(file).map((f) => {
    const stat = fs.lstatSync(f, { throwIfNoEntry: false })
    if (stat === undefined) return undefined
    if (stat.isSymbolicLink()) {
      throw new StoreError({
        message: `database file ${f} is a symbolic link (to ${fs.readlinkSync(f)}); p2pchat follows no links ` +
          `inside its data dir: move the link away (and the file it points to in its place) or ${CHOOSE_ANOTHER}`
      })
    }
    if (f === file && access === "read-write") ensureFileWritable(file, stat)
    else if (!stat.isFile()) {
      throw new StoreError({ message: `database file ${f} is not a regular file; move it away or ${CHOOSE_ANOTHER}` })
    }
    const uid = ownUid()
    if (access === "read-write" && uid !== undefined && openToOthers(stat) && stat.uid !== uid) {
      throw new StoreError({
        message: `database file ${f} is open to other users (mode ${modeText(stat)}) and owned by another ` +
          `user (uid ${stat.uid}); move it away or ${CHOOSE_ANOTHER}`
      })
    }
    return stat
  })
  return { db: stats[0], wal: stats[1] !== undefined, shm: stats[2] !== undefined }
}

/**
 * The checks of an open database's contents, read-only: throws a StoreError for a file
 * p2pchat must not touch (not SQLite, damaged, another program's, a newer schema). Tells
 * what is there: "empty" (a new file), "older" (to migrate) or "ok".
 */
export const verifyDatabase = (db: SqlDb, file: string): "ok" | "older" | "empty" => {
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
  if (version === 0 && objects === 0) return "empty"
  return version < SCHEMA_VERSION ? "older" : "ok"
}
