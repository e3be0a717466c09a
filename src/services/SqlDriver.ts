/**
 * What the SQLite seam (Sql.ts) asks of a backend (SqlNode.ts, SqlBetter.ts), and what they
 * share: the value types, the error every backend throws for a SQLite failure, and SQLite's
 * result-code names.
 *
 * No Effect and no native module is imported here or in the backends: the benchmark's
 * plain-Node baseline bundles this seam (bench/lib/build.mjs), and a backend's module is
 * loaded only when it is chosen (a static `import "node:sqlite"` crashes Node 20).
 */

export type SqlBackend = "node" | "better-sqlite3"

/** What a column holds: TEXT, INTEGER or REAL, BLOB (a Buffer from better-sqlite3), NULL. */
export type SqlValue = string | number | bigint | Uint8Array | null

/** Positional (`?`) or named (`@name`, bound from the bare key `name`) parameters. */
export type SqlParams = ReadonlyArray<SqlValue> | { readonly [name: string]: SqlValue }

/** A row: column name to value (a null-prototype object from node:sqlite). */
export type SqlRow = { readonly [column: string]: unknown }

/** A prepared statement of a backend; `args` are spread into the backend's own call. */
export interface RawStatement {
  readonly run: (args: ReadonlyArray<unknown>) => { readonly changes: number | bigint }
  readonly get: (args: ReadonlyArray<unknown>) => unknown
  readonly all: (args: ReadonlyArray<unknown>) => ReadonlyArray<unknown>
}

/** An open connection of a backend. Every SQLite failure it throws is a SqlError. */
export interface RawConnection {
  readonly prepare: (sql: string) => RawStatement
  readonly exec: (sql: string) => void
  /** `PRAGMA source`, every row (none for most assignments). */
  readonly pragma: (source: string) => ReadonlyArray<SqlRow>
  readonly inTransaction: () => boolean
  readonly close: () => void
}

export interface RawOpenOptions {
  readonly readonly: boolean
  readonly fileMustExist: boolean
  readonly timeoutMs: number
}

/** A loaded backend. */
export interface SqlDriver {
  readonly backend: SqlBackend
  readonly open: (file: string, options: RawOpenOptions) => RawConnection
}

/**
 * A failure SQLite reported, with better-sqlite3's `code` names on every backend
 * (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_UNIQUE`, ...), so that the callers' refusals, retries
 * and messages do not depend on the backend. The backend's own error is the `cause`.
 */
export class SqlError extends Error {
  readonly code: string
  constructor(code: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    // better-sqlite3's name for the same thing, so that logs read the same on both
    this.name = "SqliteError"
    this.code = code
  }
}

/** No backend can be used (or not the one P2PCHAT_SQLITE asks for); the message says what to do. */
export class SqlUnavailable extends Error {
  constructor(message: string) {
    super(message)
    this.name = "SqlUnavailable"
  }
}

/** Primary result codes 0..28, by number (sqlite3.h). */
const PRIMARY = [
  "OK", "ERROR", "INTERNAL", "PERM", "ABORT", "BUSY", "LOCKED", "NOMEM", "READONLY", "INTERRUPT",
  "IOERR", "CORRUPT", "NOTFOUND", "FULL", "CANTOPEN", "PROTOCOL", "EMPTY", "SCHEMA", "TOOBIG",
  "CONSTRAINT", "MISMATCH", "MISUSE", "NOLFS", "AUTH", "FORMAT", "RANGE", "NOTADB", "NOTICE", "WARNING"
]

/** Extended result codes: for a primary code, the suffix of (primary | (i << 8)) at index i - 1. */
const EXTENDED: { readonly [primary: number]: ReadonlyArray<string | undefined> } = {
  0: ["LOAD_PERMANENTLY", "SYMLINK"],
  1: ["MISSING_COLLSEQ", "RETRY", "SNAPSHOT", "RESERVESIZE", "KEY", "UNABLE"],
  4: [undefined, "ROLLBACK"],
  5: ["RECOVERY", "SNAPSHOT", "TIMEOUT"],
  6: ["SHAREDCACHE", "VTAB"],
  8: ["RECOVERY", "CANTLOCK", "ROLLBACK", "DBMOVED", "CANTINIT", "DIRECTORY"],
  10: [
    "READ", "SHORT_READ", "WRITE", "FSYNC", "DIR_FSYNC", "TRUNCATE", "FSTAT", "UNLOCK", "RDLOCK", "DELETE",
    "BLOCKED", "NOMEM", "ACCESS", "CHECKRESERVEDLOCK", "LOCK", "CLOSE", "DIR_CLOSE", "SHMOPEN", "SHMSIZE",
    "SHMLOCK", "SHMMAP", "SEEK", "DELETE_NOENT", "MMAP", "GETTEMPPATH", "CONVPATH", "VNODE", "AUTH",
    "BEGIN_ATOMIC", "COMMIT_ATOMIC", "ROLLBACK_ATOMIC", "DATA", "CORRUPTFS", "IN_PAGE", "BADKEY", "CODEC"
  ],
  11: ["VTAB", "SEQUENCE", "INDEX"],
  14: ["NOTEMPDIR", "ISDIR", "FULLPATH", "CONVPATH", "DIRTYWAL", "SYMLINK"],
  19: [
    "CHECK", "COMMITHOOK", "FOREIGNKEY", "FUNCTION", "NOTNULL", "PRIMARYKEY", "TRIGGER", "UNIQUE", "VTAB",
    "ROWID", "PINNED", "DATATYPE"
  ],
  23: ["USER"],
  27: ["RECOVER_WAL", "RECOVER_ROLLBACK", "RBU"],
  28: ["AUTOINDEX"]
}

/**
 * The name of a (primary or extended) result code, as better-sqlite3 names it. An extended
 * code this table does not know gets its primary name, so that the callers' prefix checks
 * (`SQLITE_BUSY...`) still hold; better-sqlite3 would say UNKNOWN_SQLITE_ERROR_<n>.
 */
export const sqliteCodeName = (code: number): string => {
  if (code === 100) return "SQLITE_ROW"
  if (code === 101) return "SQLITE_DONE"
  const primary = PRIMARY[code & 0xff]
  if (primary === undefined || code < 0) return `UNKNOWN_SQLITE_ERROR_${code}`
  const suffix = code >> 8 === 0 ? undefined : EXTENDED[code & 0xff]?.[(code >> 8) - 1]
  return suffix === undefined ? `SQLITE_${primary}` : `SQLITE_${primary}_${suffix}`
}

/** The arguments of a backend's run/get/all for the seam's parameters. */
export const argsOf = (params: SqlParams | undefined): ReadonlyArray<unknown> =>
  params === undefined ? [] : Array.isArray(params) ? params : [params]

/** What a failed load threw, on one line and short, for a message that says why. */
export const reasonOf = (e: unknown): string => {
  const text = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").trim()
  return text.length > 240 ? `${text.slice(0, 239)}…` : text
}
