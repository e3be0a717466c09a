/**
 * The `better-sqlite3` backend of the SQLite seam (Sql.ts): for runtimes without
 * node:sqlite (Node 20), or when P2PCHAT_SQLITE asks for it. It is an optional package:
 * loaded with createRequire when chosen, and a runtime without it (or with a build of it
 * for another Node) gets a clear refusal from Sql.ts, not a crash at start-up.
 */
import { createRequire } from "node:module"
import {
  type RawConnection,
  type RawOpenOptions,
  type RawStatement,
  reasonOf,
  type SqlDriver,
  SqlError,
  sqliteCodeName,
  type SqlRow
} from "./SqlDriver.ts"

/** The parts of better-sqlite3 used here (its type package is not needed to build). */
interface BetterStatement {
  run(...args: ReadonlyArray<unknown>): { readonly changes: number }
  get(...args: ReadonlyArray<unknown>): unknown
  all(...args: ReadonlyArray<unknown>): ReadonlyArray<unknown>
}

interface BetterDatabase {
  prepare(sql: string): BetterStatement
  exec(sql: string): unknown
  pragma(source: string): unknown
  close(): unknown
  readonly inTransaction: boolean
}

type BetterConstructor = new (
  file: string,
  options: { readonly readonly: boolean; readonly fileMustExist: boolean; readonly timeout: number }
) => BetterDatabase

const UNKNOWN = "UNKNOWN_SQLITE_ERROR_"

/**
 * better-sqlite3's SqliteErrors as SqlErrors (same code, same message); others (a TypeError
 * for a value that cannot be bound, a closed database) as they are. A code better-sqlite3
 * has no name for gets the name node:sqlite's backend gives it.
 */
const translate = (e: unknown): unknown => {
  if (!(e instanceof Error)) return e
  const code = (e as { readonly code?: unknown }).code
  if (typeof code !== "string") return e
  if (code.startsWith(UNKNOWN)) return new SqlError(sqliteCodeName(Number(code.slice(UNKNOWN.length))), e.message, e)
  return code.startsWith("SQLITE_") ? new SqlError(code, e.message, e) : e
}

const guard = <A>(f: () => A): A => {
  try {
    return f()
  } catch (e) {
    throw translate(e)
  }
}

const statementOf = (s: BetterStatement): RawStatement => ({
  run: (args) => guard(() => s.run(...args)),
  get: (args) => guard(() => s.get(...args)),
  all: (args) => guard(() => s.all(...args))
})

const connectionOf = (db: BetterDatabase): RawConnection => ({
  prepare: (sql) => statementOf(guard(() => db.prepare(sql))),
  exec: (sql) => void guard(() => db.exec(sql)),
  // better-sqlite3's own helper: it also runs the assignments that return no row
  pragma: (source) => guard(() => db.pragma(source) as ReadonlyArray<SqlRow>),
  inTransaction: () => db.inTransaction,
  close: () => void guard(() => db.close())
})

/** The backend, or the reason it cannot be used here (not installed, or built for another Node). */
export const load = (): SqlDriver | string => {
  let Database: BetterConstructor
  try {
    Database = createRequire(import.meta.url)("better-sqlite3") as BetterConstructor
    // the native addon loads at the first open: try one now, so that a build for another
    // Node (NODE_MODULE_VERSION) is found here, where another backend can still be chosen
    new Database(":memory:", { readonly: false, fileMustExist: false, timeout: 0 }).close()
  } catch (e) {
    return reasonOf(e)
  }
  return {
    backend: "better-sqlite3",
    open: (file: string, options: RawOpenOptions) =>
      connectionOf(guard(() =>
        new Database(file, { readonly: options.readonly, fileMustExist: options.fileMustExist, timeout: options.timeoutMs })
      ))
  }
}
