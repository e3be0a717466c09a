/**
 * SQLite for the tests, on the backend the code under test uses (src/services/Sql.ts:
 * P2PCHAT_SQLITE, else node:sqlite where the runtime has it, else better-sqlite3). The CLI
 * processes a test starts inherit P2PCHAT_SQLITE, so they choose the same one.
 */
import { createRequire } from "node:module"
import { chosenBackend, openSql, type SqlDb, type SqlOpenOptions } from "../../src/services/Sql.ts"

/** The backend of this test process. */
export const backend = chosenBackend()

/** A raw connection to `file` (another program, or the test looking at the file), on that backend. */
export const openRaw = (file: string, options: SqlOpenOptions = {}): SqlDb => openSql(file, options)

/**
 * JavaScript for a child `node -e` script (CommonJS, same runtime): opens `file` as `db` on
 * the same backend, with a 5 s busy timeout. Use only what both backends' own objects have:
 * `db.exec(sql)`, `db.prepare(sql).run(...values)`, `db.close()`.
 */
export const openInChild = (file: string): string => {
  const open = backend === "node"
    ? `new (require("node:sqlite").DatabaseSync)(${JSON.stringify(file)})`
    : `new (require(${JSON.stringify(createRequire(import.meta.url).resolve("better-sqlite3"))}))(${JSON.stringify(file)})`
  return `const db = ${open}; db.exec("PRAGMA busy_timeout = 5000");`
}
