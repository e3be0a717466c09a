/**
 * The data dir is its user's alone: the dir 0700, every file in it 0600, no symbolic link
 * inside it followed, and the identity key written where nobody can redirect it.
 *
 *   - a real `p2pchat config set` then `p2pchat start` (the CLI sets umask 077) on a fresh dir;
 *   - Stores opened in-process, under this process's umask (022): the Store itself makes
 *     p2pchat.db, -wal and -shm 0600;
 *   - an existing dir open to others: fixed when the user owns it (one info line on stderr,
 *     stdout untouched), refused when another user does; a data dir that is a link;
 *   - identity.key or p2pchat.db as a symbolic link: refused, the file it points to untouched;
 *   - the old, predictable temp name of identity.key planted as a link: the write is not
 *     redirected.
 *
 * Modes are read with fs.statSync: the tests run as root, which reads any file whatever its
 * mode. Other users are played by chown to an unused uid (root only; skipped otherwise).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Effect, Exit, Layer } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { IDENTITY_FILE, loadOrCreateIdentity } from "../../src/services/Crypto.ts"
import * as Store from "../../src/services/Store.ts"
import { DB_FILE_NAME } from "../../src/services/Store.ts"
import { cleanup, LOOPBACK, runCli, spawnCli, tempDir, useBuiltCli } from "../support/cli.ts"

useBuiltCli({ cleanupAfterEach: true })

const isRoot = process.getuid?.() === 0
/** A uid nobody on a test machine has: "another user". */
const OTHER_UID = 54_321

const modeOf = (p: string): number => fs.statSync(p).mode & 0o777
const octal = (mode: number) => mode.toString(8).padStart(4, "0")

/** Every entry of dir with its mode, as "name 0600" (the dir itself as "."). */
const modes = (dir: string): Array<string> => [
  `. ${octal(modeOf(dir))}`,
  ...fs.readdirSync(dir).sort().map((f) => `${f} ${octal(modeOf(path.join(dir, f)))}`)
]

/** Opens a Store on dataDir, runs `during` while it is open, closes it; the failure as an Exit. */
const withStore = (dataDir: string, during: (store: Store.StoreShape) => void = () => {}) =>
  Effect.runPromiseExit(Effect.scoped(Effect.gen(function*() {
    const ctx = yield* Layer.build(Store.layer(dataDir))
    const store = Context.get(ctx, Store.Store)
    store.db.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('privacy-test', 'x')")
    during(store)
  })))

const failureMessage = (exit: Exit.Exit<unknown, { readonly message: string }>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got a success")
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error(`expected a failure, got ${String(exit.cause)}`)
  return error.error.message
}

const identityIn = (dataDir: string) => Effect.runPromiseExit(loadOrCreateIdentity(dataDir))

/** A file outside the data dir that a link points at, with its bytes and mode, to prove nothing touched it. */
const victim = (content: Buffer | string, mode = 0o644) => {
  const file = path.join(tempDir("p2pchat-victim-"), "victim")
  fs.writeFileSync(file, content)
  fs.chmodSync(file, mode)
  const before = { bytes: fs.readFileSync(file), mode: modeOf(file) }
  return {
    file,
    expectUntouched: () => {
      expect(fs.readFileSync(file).equals(before.bytes), "the file the link points at was written").toBe(true)
      expect(octal(modeOf(file)), "the mode of the file the link points at changed").toBe(octal(before.mode))
    }
  }
}

afterEach(cleanup)

describe("a fresh data dir made by the CLI", () => {
  it("config set makes it, a node runs in it: the dir is 0700 and every file 0600, while it runs and after", async () => {
    const dataDir = path.join(tempDir("p2pchat-privacy-"), "fresh")
    const made = await runCli(["config", "set", "name", "x", "--data-dir", dataDir])
    expect(made.code, made.stderr).toBe(0)
    expect(modes(dataDir)).toEqual([". 0700", "config.json 0600"])

    const node = spawnCli([
      "start", "--name", "x", "--data-dir", dataDir, "--bind", LOOPBACK, "--udp-port", "0", "--tcp-port", "0",
      "--log-level", "info"
    ], { stdin: "pipe" })
    await node.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
    const running = modes(dataDir)
    expect(running).toEqual(expect.arrayContaining([`${DB_FILE_NAME}-wal 0600`, `${DB_FILE_NAME}-shm 0600`]))
    expect(running).toEqual([". 0700", ...fs.readdirSync(dataDir).sort().map((f) => `${f} 0600`)])
    const { code } = await node.stop()
    expect(code, node.stderr.join("\n")).not.toBe(null)
    const after = modes(dataDir)
    expect(after).toContain(`${DB_FILE_NAME} 0600`)
    expect(after).toEqual([". 0700", ...fs.readdirSync(dataDir).sort().map((f) => `${f} 0600`)])
  }, 30_000)
})

describe("a Store opened in-process (umask 022 here): p2pchat.db, -wal and -shm are 0600", () => {
  it("a new data dir", async () => {
    const dataDir = path.join(tempDir("p2pchat-privacy-"), "data")
    const seen: Array<Array<string>> = []
    const exit = await withStore(dataDir, () => seen.push(modes(dataDir)))
    expect(Exit.isSuccess(exit), String(exit)).toBe(true)
    expect(seen[0]).toEqual([". 0700", `${DB_FILE_NAME} 0600`, `${DB_FILE_NAME}-shm 0600`, `${DB_FILE_NAME}-wal 0600`])
  })

  it("an existing data dir of mode 0755 with a database of mode 0644 (an older p2pchat's): both are fixed", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    fs.chmodSync(dataDir, 0o755)
    expect(String(await withStore(dataDir))).toMatch(/Success/)
    fs.chmodSync(dataDir, 0o755)
    fs.chmodSync(path.join(dataDir, DB_FILE_NAME), 0o644)
    const seen: Array<Array<string>> = []
    expect(String(await withStore(dataDir, () => seen.push(modes(dataDir))))).toMatch(/Success/)
    expect(seen[0]).toEqual([". 0700", `${DB_FILE_NAME} 0600`, `${DB_FILE_NAME}-shm 0600`, `${DB_FILE_NAME}-wal 0600`])
  })
})

describe("an existing data dir open to others", () => {
  it("owned by the user, mode 0755: made 0700, with one info line on stderr and nothing on stdout but the answer", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    fs.chmodSync(dataDir, 0o755)
    const r = await runCli(["config", "set", "name", "x", "--data-dir", dataDir])
    expect(r.code, r.stderr).toBe(0)
    expect(octal(modeOf(dataDir))).toBe("0700")
    expect(r.stdout).toBe("")
    const lines = r.stderr.split("\n").filter((l) => l.includes(dataDir))
    expect(lines).toEqual([`p2pchat [info] data directory ${dataDir} was open to other users (mode 0755); it is now 0700`])
  })

  it.skipIf(!isRoot)("owned by another user: refused with a clear message, its mode left alone", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    fs.chmodSync(dataDir, 0o775)
    fs.chownSync(dataDir, OTHER_UID, OTHER_UID)
    const message = failureMessage(await withStore(dataDir))
    expect(message).toMatch(/open to other users \(mode 0775\) and owned by another user/)
    expect(message).toContain("choose another --data-dir")
    expect(failureMessage(await identityIn(dataDir))).toMatch(/owned by another user/)
    expect(octal(modeOf(dataDir))).toBe("0775")
    expect(fs.readdirSync(dataDir)).toEqual([])
  })
})

describe("a data dir that is a symbolic link", () => {
  it("to a directory of the user's: used, and that directory made private", async () => {
    const real = tempDir("p2pchat-privacy-")
    fs.chmodSync(real, 0o755)
    const link = path.join(tempDir("p2pchat-privacy-"), "data")
    fs.symlinkSync(real, link)
    expect(Exit.isSuccess(await withStore(link))).toBe(true)
    expect(Exit.isSuccess(await identityIn(link))).toBe(true)
    expect(modes(real)).toEqual([". 0700", `${IDENTITY_FILE} 0600`, `${DB_FILE_NAME} 0600`])
  })

  it.skipIf(!isRoot)("to a directory of another user's, even a private one: refused", async () => {
    const real = tempDir("p2pchat-privacy-")
    fs.chmodSync(real, 0o700)
    fs.chownSync(real, OTHER_UID, OTHER_UID)
    const link = path.join(tempDir("p2pchat-privacy-"), "data")
    fs.symlinkSync(real, link)
    expect(failureMessage(await withStore(link))).toMatch(/is a symbolic link to .*owned by another user/)
    expect(fs.readdirSync(real)).toEqual([])
  })
})

describe("symbolic links inside the data dir are refused", () => {
  it("identity.key pointing at another file: refused, that file neither read into use, written nor chmodded", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    const target = victim(Buffer.alloc(32, 7))
    fs.symlinkSync(target.file, path.join(dataDir, IDENTITY_FILE))
    const message = failureMessage(await identityIn(dataDir))
    expect(message).toMatch(/identity key .* is a symbolic link/)
    expect(message).toMatch(/move it away/)
    target.expectUntouched()
    const r = await runCli(["whoami", "--json", "--data-dir", dataDir, "--name", "x"])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^p2pchat: identity key .* is a symbolic link/)
    target.expectUntouched()
  })

  it("identity.key pointing at a missing file: refused, nothing made there", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    const missing = path.join(tempDir("p2pchat-victim-"), "made-by-p2pchat")
    fs.symlinkSync(missing, path.join(dataDir, IDENTITY_FILE))
    expect(failureMessage(await identityIn(dataDir))).toMatch(/is a symbolic link/)
    expect(fs.existsSync(missing)).toBe(false)
  })

  it("p2pchat.db pointing at another (empty) file: refused, no database made in that file", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    const target = victim("")
    fs.symlinkSync(target.file, path.join(dataDir, DB_FILE_NAME))
    const message = failureMessage(await withStore(dataDir))
    expect(message).toMatch(/p2pchat\.db is a symbolic link/)
    target.expectUntouched()
    expect(fs.readdirSync(dataDir)).toEqual([DB_FILE_NAME])
  })
})

describe("identity.key is written where nobody can redirect it", () => {
  it("the old predictable temp names planted as links to another file: the write goes to identity.key only", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    const target = victim("a file of the user's that a link points at\n")
    const planted = [`${IDENTITY_FILE}.${process.pid}.tmp`, `${IDENTITY_FILE}.tmp`, `.${IDENTITY_FILE}.tmp`]
    for (const name of planted) fs.symlinkSync(target.file, path.join(dataDir, name))
    const exit = await identityIn(dataDir)
    expect(Exit.isSuccess(exit), String(exit)).toBe(true)
    target.expectUntouched()
    const keyFile = path.join(dataDir, IDENTITY_FILE)
    const stat = fs.lstatSync(keyFile)
    expect(stat.isFile() && !stat.isSymbolicLink()).toBe(true)
    expect(octal(stat.mode & 0o777)).toBe("0600")
    expect(stat.size).toBe(32)
    // the key on disk is the identity in use, and no temp file is left behind
    if (Exit.isSuccess(exit)) expect(fs.readFileSync(keyFile).equals(Buffer.from(exit.value.keyPair.privateKey))).toBe(true)
    expect(fs.readdirSync(dataDir).sort()).toEqual([...planted, IDENTITY_FILE].sort())
  })

  it.skipIf(!isRoot)("an identity.key readable by others and owned by another user: refused", async () => {
    const dataDir = tempDir("p2pchat-privacy-")
    const keyFile = path.join(dataDir, IDENTITY_FILE)
    fs.writeFileSync(keyFile, Buffer.alloc(32, 1))
    fs.chmodSync(keyFile, 0o644)
    fs.chownSync(keyFile, OTHER_UID, OTHER_UID)
    expect(failureMessage(await identityIn(dataDir))).toMatch(/readable by others \(mode 0644\) and owned by another user/)
    expect(octal(modeOf(keyFile))).toBe("0644")
  })
})
