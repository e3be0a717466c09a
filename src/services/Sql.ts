/**
 * The SQLite seam: what p2pchat's storage asks of SQLite, on either backend.
 *
 * - `node` (SqlNode.ts): the runtime's own `node:sqlite` (Node >= 22.13): nothing to compile.
 * - `better-sqlite3` (SqlBetter.ts): the native package, for Node 20.
 *
 * Which one: the environment variable P2PCHAT_SQLITE (`node` or `better-sqlite3`) when set;
 * otherwise node:sqlite where the runtime has it, else better-sqlite3. Neither is imported
 * statically, so the code runs on a runtime that has only one of them; with neither,
 * opening fails with a SqlUnavailable that says what to do.
 *
 * Both give the same behaviour to the callers: SQLite failures are SqlErrors with
 * better-sqlite3's code names (`SQLITE_FULL`, `SQLITE_BUSY`, `SQLITE_NOTADB`, ...), the
 * same busy timeout, and the same transactions (written once, here, as better-sqlite3
 * writes them). What still differs (blobs are Buffers from better-sqlite3 and plain
 * Uint8Arrays from node:sqlite, rows of node:sqlite have no prototype) is invisible to
 * code that reads blobs as Uint8Array and rows by column name.
 *
 * No Effect here: the benchmark's plain-Node baseline bundles this module.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as SqlBetter from "./SqlBetter.ts"
import {
  argsOf,
  type RawConnection,
  type RawStatement,
  type SqlBackend,
  type SqlDriver,
  SqlError,
  type SqlParams,
  type SqlRow,
  SqlUnavailable,
  type SqlValue
} from "./SqlDriver.ts"
import * as SqlNode from "./SqlNode.ts"

export { type SqlBackend, SqlError, type SqlParams, type SqlRow, SqlUnavailable, type SqlValue } from "./SqlDriver.ts"

/** The environment variable that picks the backend. */
export const SQLITE_ENV = "P2PCHAT_SQLITE"

export const BACKENDS: ReadonlyArray<SqlBackend> = ["node", "better-sqlite3"]

/** `P`: the parameters, `R`: a row (better-sqlite3's order). */
export interface SqlStatement<P extends SqlParams = SqlParams, R = SqlRow> {
  /** Runs it; `changes`: rows inserted, updated or deleted (SQLite's changes()). */
  readonly run: (params?: P) => { readonly changes: number }
  /** The first row, or undefined. */
  readonly get: (params?: P) => R | undefined
  readonly all: (params?: P) => Array<R>
}

export interface SqlDb {
  readonly backend: SqlBackend
  /** The file as given to `openSql`. */
  readonly file: string
  readonly isOpen: boolean
  readonly inTransaction: boolean
  readonly prepare: <P extends SqlParams = SqlParams, R = SqlRow>(sql: string) => SqlStatement<P, R>
  /** Runs one or more statements, returning nothing. */
  readonly exec: (sql: string) => void
  /** `PRAGMA source`: its rows, or with `simple` the first column of the first row. */
  readonly pragma: {
    (source: string): ReadonlyArray<SqlRow>
    (source: string, options: { readonly simple: true }): SqlValue | undefined
  }
  /**
   * Runs `fn` in a transaction and commits, or rolls back if it throws (then rethrows).
   * Inside another transaction it is a savepoint of that one. `immediate` takes the write
   * lock at BEGIN (waiting up to the busy timeout), so nothing read in `fn` can change
   * before its writes.
   */
  readonly transaction: <A>(fn: () => A, behavior?: "deferred" | "immediate") => A
  /** Closes the connection; closing a closed one does nothing. */
  readonly close: () => void
}

export interface SqlOpenOptions {
  /** Opens read-only: nothing is ever written through it. */
  readonly readonly?: boolean
  /** Fails (SQLITE_CANTOPEN) rather than create a missing file. */
  readonly fileMustExist?: boolean
  /** How long a statement waits for another connection's lock; 5000 ms, better-sqlite3's default, unless given. */
  readonly timeoutMs?: number
  /** This backend, whatever P2PCHAT_SQLITE says (the seam's tests run both). */
  readonly backend?: SqlBackend
}

const DEFAULT_TIMEOUT_MS = 5000

/** Each backend loaded once per process: the driver, or the reason it is unavailable. */
const loaded = new Map<SqlBackend, SqlDriver | string>()

const loadBackend = (backend: SqlBackend): SqlDriver | string => {
  let driver = loaded.get(backend)
  if (driver === undefined) {
    driver = backend === "node" ? SqlNode.load() : SqlBetter.load()
    loaded.set(backend, driver)
  }
  return driver
}

/** What a user can do when a backend asked for is not there. */
const remedy = (backend: SqlBackend): string =>
  backend === "node"
    ? `use Node 22.13 or later (this is ${process.version}), or set ${SQLITE_ENV}=better-sqlite3`
    : "install it with `npm install better-sqlite3` (or `npm rebuild better-sqlite3` after changing Node), " +
      `or use Node 22.13 or later and its node:sqlite`

const driverFor = (backend: SqlBackend, why: string): SqlDriver => {
  const driver = loadBackend(backend)
  if (typeof driver !== "string") return driver
  const name = backend === "node" ? "node:sqlite" : "better-sqlite3"
  throw new SqlUnavailable(`${why}, but ${name} cannot be loaded (${driver}); ${remedy(backend)}`)
}

/** The backend P2PCHAT_SQLITE asks for, or the first this runtime has. Throws SqlUnavailable. */
const chooseDriver = (): SqlDriver => {
  const asked = process.env[SQLITE_ENV]
  if (asked === "node" || asked === "better-sqlite3") return driverFor(asked, `${SQLITE_ENV}=${asked} asks for it`)
  if (asked !== undefined && asked !== "") {
    throw new SqlUnavailable(`${SQLITE_ENV} must be \`node\` or \`better-sqlite3\`, not \`${asked}\``)
  }
  const node = loadBackend("node")
  if (typeof node !== "string") return node
  const better = loadBackend("better-sqlite3")
  if (typeof better !== "string") return better
  throw new SqlUnavailable(
    `no SQLite for the history: this Node (${process.version}) has no node:sqlite (${node}) and better-sqlite3 ` +
      `cannot be loaded (${better}); use Node 22.13 or later, or run \`npm install better-sqlite3\``
  )
}

/** The backend `openSql` uses when none is given. Throws SqlUnavailable. */
export const chosenBackend = (): SqlBackend => chooseDriver().backend

/** The backends this runtime can load. */
export const availableBackends = (): ReadonlyArray<SqlBackend> =>
  BACKENDS.filter((b) => typeof loadBackend(b) !== "string")

const statementOf = <P extends SqlParams, R>(s: RawStatement): SqlStatement<P, R> => ({
  run: (params) => ({ changes: Number(s.run(argsOf(params)).changes) }),
  get: (params) => s.get(argsOf(params)) as R | undefined,
  all: (params) => s.all(argsOf(params)) as Array<R>
})

/** better-sqlite3's transaction, for both backends: BEGIN/COMMIT, or a savepoint when nested. */
const transactionOf = (raw: RawConnection) => {
  const control = new Map<string, RawStatement>()
  const run = (sql: string) => {
    let s = control.get(sql)
    if (s === undefined) control.set(sql, s = raw.prepare(sql))
    s.run([])
  }
  return <A>(fn: () => A, behavior: "deferred" | "immediate" = "deferred"): A => {
    const nested = raw.inTransaction()
    const [begin, commit, undo] = nested
      ? ["SAVEPOINT p2pchat_tx", "RELEASE p2pchat_tx", "ROLLBACK TO p2pchat_tx"]
      : [behavior === "immediate" ? "BEGIN IMMEDIATE" : "BEGIN", "COMMIT", "ROLLBACK"]
    run(begin)
    try {
      const result = fn()
      if (typeof (result as { then?: unknown } | null)?.then === "function") {
        throw new TypeError("a transaction's function must not return a promise")
      }
      run(commit)
      return result
    } catch (e) {
      // SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR...)
      if (raw.inTransaction()) {
        run(undo)
        if (nested) run(commit)
      }
      throw e
    }
  }
}

const dbOf = (backend: SqlBackend, file: string, raw: RawConnection): SqlDb => {
  let open = true
  function pragma(source: string): ReadonlyArray<SqlRow>
  function pragma(source: string, options: { readonly simple: true }): SqlValue | undefined
  function pragma(source: string, options?: { readonly simple: true }) {
    const rows = raw.pragma(source)
    if (options?.simple !== true) return rows
    const first = rows[0]
    return first === undefined ? undefined : Object.values(first)[0] as SqlValue
  }
  return {
    backend,
    file,
    get isOpen() {
      return open
    },
    get inTransaction() {
      return raw.inTransaction()
    },
    prepare: <P extends SqlParams = SqlParams, R = SqlRow>(sql: string) => statementOf<P, R>(raw.prepare(sql)),
    exec: (sql) => raw.exec(sql),
    pragma,
    transaction: transactionOf(raw),
    close: () => {
      if (!open) return
      open = false
      raw.close()
    }
  }
}

/**
 * Opens a database file on the chosen backend (see the header). Throws SqlUnavailable when
 * there is no backend, and a SqlError for what SQLite refuses (SQLITE_CANTOPEN for a missing
 * directory, or a missing file with `fileMustExist`, on both backends).
 */
export const openSql = (file: string, options: SqlOpenOptions = {}): SqlDb => {
  const driver = options.backend === undefined
    ? chooseDriver()
    : driverFor(options.backend, `the ${options.backend} backend is asked for`)
  if (file !== ":memory:") {
    // better-sqlite3 says so with a TypeError without a code, node:sqlite with SQLITE_CANTOPEN
    if (!fs.existsSync(path.dirname(path.resolve(file)))) {
      throw new SqlError("SQLITE_CANTOPEN", `unable to open database file: directory ${path.dirname(file)} does not exist`)
    }
    if (options.fileMustExist === true && !fs.existsSync(file)) {
      throw new SqlError("SQLITE_CANTOPEN", `unable to open database file: ${file} does not exist`)
    }
  }
  const raw = driver.open(file, {
    readonly: options.readonly ?? false,
    fileMustExist: options.fileMustExist ?? false,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  })
  return dbOf(driver.backend, file, raw)
}
