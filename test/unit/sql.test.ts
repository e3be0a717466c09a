/**
 * The SQLite seam (src/services/Sql.ts) on every backend this runtime can load: node:sqlite
 * (Node >= 22.13) and better-sqlite3 (where its native build fits this Node). The same
 * assertions for each, so that the storage above it sees one behaviour: values round-trip,
 * parameters bind, `changes` counts, transactions commit and roll back, pragmas read and
 * set, and SQLite's failures carry the same SQLITE_* code names (a non-database file, a
 * constraint, a lock, a read-only connection, a full database, and a really full disk when
 * a tmpfs can be mounted).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { build } from "esbuild"
import { afterAll, describe, expect, it } from "vitest"
import {
  availableBackends,
  BACKENDS,
  chosenBackend,
  openSql,
  SQLITE_ENV,
  type SqlDb,
  SqlError,
  SqlUnavailable
} from "../../src/services/Sql.ts"
import { sqliteCodeName } from "../../src/services/SqlDriver.ts"
import { inTransactionOf } from "../../src/services/SqlNode.ts"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const available = availableBackends()
const dirs: Array<string> = []
const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-sql-"))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

/** What `f` throws (fails the test when it throws nothing). */
const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  throw new Error("expected a throw")
}

/** The SQLITE_* code of what `f` throws, which must be a SqlError. */
const codeOf = (f: () => unknown): string => {
  const e = thrown(f)
  expect(e).toBeInstanceOf(SqlError)
  return (e as SqlError).code
}

/** Runs `f` with P2PCHAT_SQLITE set to `value` (unset for undefined). */
const withEnv = <A>(value: string | undefined, f: () => A): A => {
  const before = process.env[SQLITE_ENV]
  if (value === undefined) delete process.env[SQLITE_ENV]
  else process.env[SQLITE_ENV] = value
  try {
    return f()
  } finally {
    if (before === undefined) delete process.env[SQLITE_ENV]
    else process.env[SQLITE_ENV] = before
  }
}

const table = (db: SqlDb) => {
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER, r REAL, b BLOB, z TEXT CHECK (z <> 'no'))")
  return db
}

describe("the backend choice", () => {
  it("this runtime can load at least one backend, and the choice is one of them", () => {
    expect(available.length).toBeGreaterThan(0)
    expect(available).toContain(withEnv(undefined, chosenBackend))
  })

  it("without P2PCHAT_SQLITE: node:sqlite where the runtime has it, else better-sqlite3", () => {
    expect(withEnv(undefined, chosenBackend)).toBe(available.includes("node") ? "node" : "better-sqlite3")
  })

  it("P2PCHAT_SQLITE picks an available backend; an unknown value is refused with what to set", () => {
    for (const b of available) expect(withEnv(b, chosenBackend)).toBe(b)
    const e = withEnv("postgres", () => thrown(chosenBackend))
    expect(e).toBeInstanceOf(SqlUnavailable)
    expect((e as Error).message).toContain("must be `node` or `better-sqlite3`")
  })

  it.skipIf(available.length === BACKENDS.length)("asking for a backend this runtime lacks says what to do", () => {
    const missing = BACKENDS.find((b) => !available.includes(b))!
    const e = withEnv(missing, () => thrown(() => openSql(":memory:")))
    expect(e).toBeInstanceOf(SqlUnavailable)
    const message = (e as Error).message
    expect(message).toContain(`${SQLITE_ENV}=${missing}`)
    expect(message).toMatch(missing === "node" ? /Node 22\.13 or later/ : /npm install better-sqlite3/)
  })
})

describe("SQLite code names", () => {
  it("primary and extended codes get better-sqlite3's names", () => {
    expect(sqliteCodeName(5)).toBe("SQLITE_BUSY")
    expect(sqliteCodeName(13)).toBe("SQLITE_FULL")
    expect(sqliteCodeName(26)).toBe("SQLITE_NOTADB")
    expect(sqliteCodeName(2067)).toBe("SQLITE_CONSTRAINT_UNIQUE")
    expect(sqliteCodeName(275)).toBe("SQLITE_CONSTRAINT_CHECK")
    expect(sqliteCodeName(778)).toBe("SQLITE_IOERR_WRITE")
    expect(sqliteCodeName(517)).toBe("SQLITE_BUSY_SNAPSHOT")
    expect(sqliteCodeName(1032)).toBe("SQLITE_READONLY_DBMOVED")
    expect(sqliteCodeName(516)).toBe("SQLITE_ABORT_ROLLBACK")
    // an extended code not in the table keeps its primary name, so prefix checks still hold
    expect(sqliteCodeName(5 | (60 << 8))).toBe("SQLITE_BUSY")
    expect(sqliteCodeName(99)).toBe("UNKNOWN_SQLITE_ERROR_99")
  })
})

for (const backend of BACKENDS) {
  describe.skipIf(!available.includes(backend))(`the ${backend} backend`, () => {
    const open = (file: string, options: Parameters<typeof openSql>[1] = {}) => openSql(file, { ...options, backend })
    const memory = () => table(open(":memory:"))

    it("says which backend it is, closes once and tolerates a second close", () => {
      const db = open(":memory:")
      expect(db.backend).toBe(backend)
      expect(db.isOpen).toBe(true)
      db.close()
      expect(db.isOpen).toBe(false)
      db.close()
    })

    it("round-trips text, integers, reals, blobs and null", () => {
      const db = memory()
      const bytes = new Uint8Array([0, 1, 2, 254, 255])
      const text = "héllo \u{1F600} \u0000 end"
      db.prepare("INSERT INTO t (id, name, n, r, b, z) VALUES (?, ?, ?, ?, ?, ?)")
        .run([1, text, Number.MAX_SAFE_INTEGER, 2.5, bytes, null])
      db.prepare("INSERT INTO t (id, n) VALUES (?, ?)").run([2, -7])
      const row = db.prepare<[number], Record<string, unknown>>("SELECT * FROM t WHERE id = ?").get([1])!
      expect(row["name"]).toBe(text)
      expect(row["n"]).toBe(Number.MAX_SAFE_INTEGER)
      expect(row["r"]).toBe(2.5)
      expect(row["b"]).toBeInstanceOf(Uint8Array)
      expect([...(row["b"] as Uint8Array)]).toEqual([...bytes])
      expect(row["z"]).toBeNull()
      expect(db.prepare<[], { n: number }>("SELECT n FROM t ORDER BY id").all().map((r) => r.n))
        .toEqual([Number.MAX_SAFE_INTEGER, -7])
      expect(db.prepare("SELECT * FROM t WHERE id = 99").get()).toBeUndefined()
      expect(db.prepare("SELECT * FROM t WHERE id = 99").all()).toEqual([])
      // rows read by column name, the same on both (node:sqlite's have no prototype)
      expect({ ...db.prepare("SELECT id, name FROM t WHERE id = 2").get() }).toEqual({ id: 2, name: null })
    })

    it("binds named parameters from bare keys, ignores keys no parameter names, and counts changes", () => {
      const db = memory()
      const insert = db.prepare<{ id: number; name: string }>("INSERT INTO t (id, name) VALUES (@id, @name)")
      expect(insert.run({ id: 1, name: "a" }).changes).toBe(1)
      expect(db.prepare("INSERT INTO t (id, name) VALUES (:id, $name)").run({ id: 2, name: "b" }).changes).toBe(1)
      expect(insert.run({ id: 3, name: "c", extra: "ignored" } as { id: number; name: string }).changes).toBe(1)
      expect(db.prepare("UPDATE t SET n = 1 WHERE id >= @from").run({ from: 2 }).changes).toBe(2)
      expect(db.prepare("INSERT INTO t (id, name) VALUES (1, 'x') ON CONFLICT DO NOTHING").run().changes).toBe(0)
      expect(db.prepare<{ name: string }, { id: number }>("SELECT id FROM t WHERE name = @name").get({ name: "b" }))
        .toMatchObject({ id: 2 })
    })

    it("a transaction commits; a throw rolls it back and is rethrown as it was", () => {
      const db = memory()
      const insert = db.prepare("INSERT INTO t (id) VALUES (?)")
      expect(db.transaction(() => {
        insert.run([1])
        expect(db.inTransaction).toBe(true)
        return "done"
      })).toBe("done")
      expect(db.inTransaction).toBe(false)
      const boom = new Error("boom")
      expect(thrown(() =>
        db.transaction(() => {
          insert.run([2])
          throw boom
        })
      )).toBe(boom)
      expect(db.inTransaction).toBe(false)
      expect(db.prepare<[], { id: number }>("SELECT id FROM t").all().map((r) => r.id)).toEqual([1])
    })

    it("a nested transaction is a savepoint: its rollback leaves the outer one's writes", () => {
      const db = memory()
      const insert = db.prepare("INSERT INTO t (id) VALUES (?)")
      db.transaction(() => {
        insert.run([1])
        thrown(() =>
          db.transaction(() => {
            insert.run([2])
            throw new Error("inner")
          })
        )
        db.transaction(() => insert.run([3]))
      }, "immediate")
      expect(db.prepare<[], { id: number }>("SELECT id FROM t ORDER BY id").all().map((r) => r.id)).toEqual([1, 3])
    })

    it("an immediate transaction holds the write lock: another connection gets SQLITE_BUSY once its timeout runs out", () => {
      const file = path.join(tempDir(), "lock.db")
      const a = table(open(file))
      a.pragma("journal_mode = WAL")
      const b = open(file, { timeoutMs: 20 })
      try {
        a.transaction(() => {
          expect(codeOf(() => b.exec("BEGIN IMMEDIATE"))).toBe("SQLITE_BUSY")
          expect(codeOf(() => b.prepare("INSERT INTO t (id) VALUES (1)").run())).toBe("SQLITE_BUSY")
        }, "immediate")
        expect(b.prepare("INSERT INTO t (id) VALUES (1)").run().changes).toBe(1)
      } finally {
        b.close()
        a.close()
      }
    })

    it("pragma gives rows, or with simple the first value; an assignment takes effect", () => {
      const db = open(path.join(tempDir(), "p.db"))
      expect(db.pragma("journal_mode = WAL", { simple: true })).toBe("wal")
      db.pragma("synchronous = NORMAL")
      expect(db.pragma("synchronous", { simple: true })).toBe(1)
      db.pragma("user_version = 7")
      expect(db.pragma("user_version", { simple: true })).toBe(7)
      expect(db.pragma("user_version")).toEqual([expect.objectContaining({ user_version: 7 })])
      expect(db.pragma("busy_timeout", { simple: true })).toBe(5000)
      expect(db.pragma("quick_check").map((r) => ({ ...r }))).toEqual([{ quick_check: "ok" }])
      db.close()
    })

    it("error codes: constraints, a non-database file, a read-only connection, a missing file or directory", () => {
      const db = memory()
      db.prepare("INSERT INTO t (id, name) VALUES (1, 'a')").run()
      expect(codeOf(() => db.prepare("INSERT INTO t (id, name) VALUES (2, 'a')").run())).toBe("SQLITE_CONSTRAINT_UNIQUE")
      expect(codeOf(() => db.prepare("INSERT INTO t (id) VALUES (1)").run())).toBe("SQLITE_CONSTRAINT_PRIMARYKEY")
      expect(codeOf(() => db.prepare("INSERT INTO t (id, z) VALUES (3, 'no')").run())).toBe("SQLITE_CONSTRAINT_CHECK")
      expect(codeOf(() => db.prepare("SELECT nope FROM t"))).toBe("SQLITE_ERROR")

      const dir = tempDir()
      const junk = path.join(dir, "junk.db")
      fs.writeFileSync(junk, Buffer.alloc(8192, 0x5a))
      // opening reads nothing yet; the first read of the header fails
      const notDb = open(junk, { readonly: true })
      expect(codeOf(() => notDb.pragma("user_version", { simple: true }))).toBe("SQLITE_NOTADB")
      notDb.close()

      const file = path.join(dir, "ro.db")
      table(open(file)).close()
      const ro = open(file, { readonly: true, fileMustExist: true })
      expect(codeOf(() => ro.prepare("INSERT INTO t (id) VALUES (1)").run())).toMatch(/^SQLITE_READONLY/)
      ro.close()

      expect(codeOf(() => open(path.join(dir, "missing.db"), { fileMustExist: true }))).toBe("SQLITE_CANTOPEN")
      expect(fs.existsSync(path.join(dir, "missing.db"))).toBe(false)
      expect(codeOf(() => open(path.join(dir, "no", "such", "dir.db")))).toBe("SQLITE_CANTOPEN")
    })

    it("a database at its size limit fails writes with SQLITE_FULL, rolled back, and works again once allowed to grow", () => {
      const db = table(open(path.join(tempDir(), "full.db")))
      const pages = db.pragma("page_count", { simple: true }) as number
      db.pragma(`max_page_count = ${pages}`)
      const insert = db.prepare("INSERT INTO t (id, b) VALUES (?, ?)")
      const e = thrown(() => db.transaction(() => insert.run([1, new Uint8Array(64 * 1024)])))
      expect(e).toBeInstanceOf(SqlError)
      expect((e as SqlError).code).toBe("SQLITE_FULL")
      expect((e as Error).message).toMatch(/full/)
      expect(db.inTransaction).toBe(false)
      db.pragma("max_page_count = 1073741823")
      expect(insert.run([1, new Uint8Array(64 * 1024)]).changes).toBe(1)
      db.close()
    })
  })
}

describe.skipIf(!available.includes("node"))("node:sqlite without isTransaction (Node 22.13 to 22.15)", () => {
  it("the probe says whether a transaction is open, and changes nothing", () => {
    const { DatabaseSync } = createRequire(import.meta.url)("node:sqlite") as {
      DatabaseSync: new (file: string) => { exec(sql: string): void; close(): void }
    }
    const real = new DatabaseSync(":memory:")
    const old = { prepare: () => undefined as never, exec: (sql: string) => real.exec(sql), close: () => real.close() }
    const inTransaction = inTransactionOf(old)
    expect(inTransaction()).toBe(false)
    expect(inTransaction()).toBe(false)
    real.exec("BEGIN")
    expect(inTransaction()).toBe(true)
    real.exec("COMMIT")
    expect(inTransaction()).toBe(false)
    real.close()
  })
})

/** Root with unshare and tmpfs: a real file system that runs out of space. */
const canMountTmpfs = (() => {
  if (process.getuid?.() !== 0) return false
  const dir = tempDir()
  const r = spawnSync("unshare", ["-m", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs "${dir}" && touch "${dir}/x"`], { timeout: 10_000 })
  return r.status === 0 && !fs.existsSync(path.join(dir, "x"))
})()

describe.skipIf(!canMountTmpfs)("a really full disk (a 512 KiB tmpfs in a private mount namespace)", () => {
  for (const backend of BACKENDS) {
    it.skipIf(!available.includes(backend))(`${backend}: writes fail with SQLITE_FULL, and what was committed stays`, async () => {
      const out = tempDir()
      // the seam bundled as the CLI bundles it, for a plain Node child (Node 20 runs no TypeScript)
      const bundle = path.join(out, "sql.mjs")
      await build({
        entryPoints: [path.join(ROOT, "src", "services", "Sql.ts")],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        external: ["better-sqlite3"],
        outfile: bundle,
        logLevel: "silent"
      })
      // better-sqlite3 is resolved from the bundle's directory: give it the project's
      fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(out, "node_modules"))
      const mnt = tempDir()
      const script = `
        import { openSql } from ${JSON.stringify(pathToFileURL(bundle).href)}
        const db = openSql(${JSON.stringify(path.join(mnt, "full.db"))}, { backend: ${JSON.stringify(backend)} })
        db.pragma("journal_mode = WAL")
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        const insert = db.prepare("INSERT INTO t (b) VALUES (?)")
        let stored = 0, code = "none", message = ""
        try {
          for (let i = 0; i < 10000; i++) { db.transaction(() => insert.run([new Uint8Array(16 * 1024)])); stored++ }
        } catch (e) { code = e.code; message = e.message }
        const count = db.prepare("SELECT count(*) AS n FROM t").get().n
        const check = db.pragma("quick_check", { simple: true })
        console.log(JSON.stringify({ stored, code, message, count, check }))
      `
      const r = spawnSync("unshare", [
        "-m", "sh", "-c", `mount -t tmpfs -o size=512k tmpfs "$1" && exec "$2" --input-type=module -e "$3"`, "sh", mnt, process.execPath, script
      ], { timeout: 60_000, encoding: "utf8" })
      expect(r.status, r.stderr).toBe(0)
      const result = JSON.parse(r.stdout.trim().split("\n").pop()!)
      expect(result.code).toBe("SQLITE_FULL")
      expect(result.message).toMatch(/full/)
      expect(result.stored).toBeGreaterThan(0)
      expect(result.count).toBe(result.stored)
      expect(result.check).toBe("ok")
    }, 60_000)
  }
})
