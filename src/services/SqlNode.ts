/**
 * The `node:sqlite` backend of the SQLite seam (Sql.ts): `DatabaseSync`, in the runtime
 * since Node 22.13 without a flag, so nothing is compiled at install.
 *
 * It is loaded with createRequire when chosen, never imported: Node 20 has no node:sqlite,
 * and a static import would fail there before any code runs. The few ways it differs from
 * better-sqlite3 that the callers could see are evened out here: errors carry
 * better-sqlite3's code names, the busy timeout is set at open as better-sqlite3 sets it,
 * and unknown named parameters are ignored as better-sqlite3 ignores them.
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

/** The parts of node:sqlite used here (its types vary between Node versions). */
interface NodeStatement {
  run(...args: ReadonlyArray<unknown>): { readonly changes: number | bigint }
  get(...args: ReadonlyArray<unknown>): unknown
  all(...args: ReadonlyArray<unknown>): ReadonlyArray<unknown>
  /** Node >= 22.15 / 23.? ; absent before. */
  setAllowUnknownNamedParameters?: (enabled: boolean) => void
}

interface NodeDatabase {
  prepare(sql: string): NodeStatement
  exec(sql: string): void
  close(): void
  /** Node >= 22.16; absent before (then probed, see `inTransactionOf`). */
  readonly isTransaction?: boolean
}

interface NodeSqlite {
  readonly DatabaseSync: new (file: string, options: { readonly readOnly: boolean }) => NodeDatabase
}

/** node:sqlite's SQLite errors (`ERR_SQLITE_ERROR`, numeric extended `errcode`) as SqlErrors; others as they are. */
const translate = (e: unknown): unknown => {
  if (typeof e !== "object" || e === null) return e
  const { code, errcode } = e as { readonly code?: unknown; readonly errcode?: unknown }
  if (code !== "ERR_SQLITE_ERROR" || typeof errcode !== "number") return e
  return new SqlError(sqliteCodeName(errcode), e instanceof Error ? e.message : String(e), e)
}

const guard = <A>(f: () => A): A => {
  try {
    return f()
  } catch (e) {
    throw translate(e)
  }
}

const statementOf = (s: NodeStatement): RawStatement => {
  // better-sqlite3 ignores a key no parameter names; node:sqlite would throw
  s.setAllowUnknownNamedParameters?.(true)
  return {
    run: (args) => guard(() => s.run(...args)),
    get: (args) => guard(() => s.get(...args)),
    all: (args) => guard(() => s.all(...args))
  }
}

/**
 * Whether a transaction is open. Without `isTransaction` (Node 22.13 to 22.15): a BEGIN
 * fails inside a transaction and, outside, opens a deferred one that has taken no lock yet
 * and is rolled back at once, so the probe changes nothing.
 */
export const inTransactionOf = (db: NodeDatabase): (() => boolean) => {
  if (typeof db.isTransaction === "boolean") return () => db.isTransaction!
  return () => {
    try {
      db.exec("BEGIN")
    } catch (e) {
      const t = translate(e)
      if (t instanceof SqlError && t.code === "SQLITE_ERROR") return true
      throw t
    }
    db.exec("ROLLBACK")
    return false
  }
}

const connectionOf = (db: NodeDatabase): RawConnection => ({
  prepare: (sql) => statementOf(guard(() => db.prepare(sql))),
  exec: (sql) => guard(() => db.exec(sql)),
  pragma: (source) => guard(() => db.prepare(`PRAGMA ${source}`).all() as ReadonlyArray<SqlRow>),
  inTransaction: inTransactionOf(db),
  close: () => guard(() => db.close())
})

const openWith = (sqlite: NodeSqlite) => (file: string, options: RawOpenOptions): RawConnection => {
  // fileMustExist: checked by Sql.ts (node:sqlite has no such option; read-only never creates)
  const db = guard(() => new sqlite.DatabaseSync(file, { readOnly: options.readonly }))
  try {
    // a setting of this connection: it neither reads nor writes the file (better-sqlite3's
    // open does not either, so a file that is no database fails at the first read on both)
    db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.timeoutMs))}`)
  } catch (e) {
    db.close()
    throw translate(e)
  }
  return connectionOf(db)
}

/**
 * Runs `f` with node:sqlite's "experimental feature" warning (printed on first load by the
 * Node versions that still print it) kept off the user's terminal; every other warning goes on.
 */
const withoutSqliteWarning = <A>(f: () => A): A => {
  const emit = process.emitWarning
  process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) => {
    const text = typeof warning === "string" ? warning : warning.message
    if (/sqlite/i.test(text)) return
    ;(emit as (...args: Array<unknown>) => void).call(process, warning, ...rest)
  }) as typeof process.emitWarning
  try {
    return f()
  } finally {
    process.emitWarning = emit
  }
}

/** The backend, or the reason this runtime cannot give it (Node < 22.13 has no node:sqlite without a flag). */
export const load = (): SqlDriver | string => {
  try {
    const sqlite = withoutSqliteWarning(() => createRequire(import.meta.url)("node:sqlite") as NodeSqlite)
    if (typeof sqlite.DatabaseSync !== "function") return "node:sqlite has no DatabaseSync"
    return { backend: "node", open: openWith(sqlite) }
  } catch (e) {
    return reasonOf(e)
  }
}
