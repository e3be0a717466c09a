import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import * as History from "../../src/services/History.ts"
import type { Mode } from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import { APPLICATION_ID, DB_FILE_NAME, SCHEMA_VERSION, StoreError } from "../../src/services/Store.ts"
import { openInChild, openRaw } from "../support/sql.ts"

/** A fresh temp dir, removed when the test's scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-history-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const nodeLayer = (dataDir: string) => History.layer.pipe(Layer.provideMerge(Store.layer(dataDir)))

/** Opens Store + History on dataDir for the rest of the enclosing scope. */
const openNode = (dataDir: string) =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(nodeLayer(dataDir))
    return { history: Context.get(ctx, History.History), store: Context.get(ctx, Store.Store) }
  })

/** Tries to open a Store on dataDir and returns the StoreError it fails with. */
const openFailure = (dataDir: string) =>
  Effect.scoped(Effect.flip(Layer.build(Store.layer(dataDir))))

const msg = (id: string, peer: string, text: string, at = new Date("2024-05-01T10:00:00.000Z"), mode: Mode = "noise") => ({
  id,
  peer,
  text,
  at,
  mode
})

const dbFile = (dir: string) => path.join(dir, DB_FILE_NAME)

/** Every file of a dir with its bytes, to prove a refused open changed nothing. */
const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f)).toString("hex")]))

describe("Store", () => {
  it.effect("creates the schema at first open, sets application_id and user_version, dir mode 0700, WAL", () =>
    Effect.gen(function*() {
      const dir = path.join(yield* tempDir, "data")
      yield* Effect.scoped(Effect.gen(function*() {
        const { store } = yield* openNode(dir)
        assert.strictEqual(store.file, dbFile(dir))
        assert.strictEqual(store.db.pragma("journal_mode", { simple: true }), "wal")
        assert.strictEqual(store.db.pragma("synchronous", { simple: true }), 1) // NORMAL: durability comes from Store.durable
        assert.strictEqual(store.db.pragma("busy_timeout", { simple: true }), 5000)
        assert.strictEqual(store.db.pragma("foreign_keys", { simple: true }), 1)
      }))
      assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700)
      const raw = openRaw(dbFile(dir), { readonly: true })
      try {
        assert.strictEqual(raw.pragma("application_id", { simple: true }), APPLICATION_ID)
        assert.strictEqual(APPLICATION_ID, 0x70327063)
        assert.strictEqual(raw.pragma("user_version", { simple: true }), SCHEMA_VERSION)
        assert.isAtLeast(SCHEMA_VERSION, 1)
        const tables = raw
          .prepare<[], { name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
          .all()
          .map((r) => r.name)
        assert.includeMembers(tables, ["messages", "meta", "peers", "pins"])
        const indexed = raw
          .prepare<[], { name: string }>("SELECT name FROM pragma_index_info('messages_peer_seq')")
          .all()
          .map((r) => r.name)
        assert.deepStrictEqual(indexed, ["peer", "seq"])
      } finally {
        raw.close()
      }
    }))

  it.effect("history survives closing and reopening the store", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const { history } = yield* openNode(dir)
        yield* history.recordSent(msg("m1", "bob", "hello bob"))
        yield* history.recordReceived(msg("m2", "bob", "hi alice"))
        yield* history.setState("m1", "bob", "delivered")
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const { history } = yield* openNode(dir)
        const all = yield* history.conversation()
        assert.deepStrictEqual(all.map((e) => [e.id, e.direction, e.text, e.state]), [
          ["m1", "sent", "hello bob", "delivered"],
          ["m2", "received", "hi alice", "received"]
        ])
      }))
    }))

  it.effect("refuses a foreign SQLite database (other application_id, with a table) without modifying it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const raw = openRaw(dbFile(dir))
      raw.pragma("application_id = 0x12345678")
      raw.exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts VALUES (1, 'x')")
      raw.close()
      const before = snapshot(dir)
      const err = yield* openFailure(dir)
      assert.instanceOf(err, StoreError)
      assert.include(err.message, dbFile(dir))
      assert.include(err.message, "is not a p2pchat database")
      assert.include(err.message, "0x12345678")
      assert.include(err.message, "--data-dir")
      assert.deepStrictEqual(snapshot(dir), before)
    }))

  it.effect("refuses a SQLite database with tables and no application_id without modifying it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const raw = openRaw(dbFile(dir))
      raw.exec("CREATE TABLE notes (body TEXT)")
      raw.close()
      const before = snapshot(dir)
      const err = yield* openFailure(dir)
      assert.include(err.message, "is not a p2pchat database")
      assert.deepStrictEqual(snapshot(dir), before)
    }))

  it.effect("refuses a garbage file (random bytes) without modifying it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      fs.writeFileSync(dbFile(dir), randomBytes(8192))
      const before = snapshot(dir)
      const err = yield* openFailure(dir)
      assert.strictEqual(err._tag, "StoreError")
      assert.include(err.message, dbFile(dir))
      assert.include(err.message, "not a SQLite database or is damaged")
      assert.include(err.message, "move it away")
      assert.deepStrictEqual(snapshot(dir), before)
    }))

  it.effect("refuses a damaged p2pchat database (pages overwritten) without modifying it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const { history } = yield* openNode(dir)
        for (let i = 0; i < 200; i++) yield* history.recordSent(msg(`m${i}`, "bob", `text ${i} `.repeat(20)))
      }))
      const file = dbFile(dir)
      const bytes = fs.readFileSync(file)
      const pageSize = bytes.readUInt16BE(16)
      // keep the header page (so the file still looks like ours), wreck every other page
      randomBytes(bytes.length - pageSize).copy(bytes, pageSize)
      fs.writeFileSync(file, bytes)
      const before = snapshot(dir)
      const err = yield* openFailure(dir)
      assert.include(err.message, "not a SQLite database or is damaged")
      assert.deepStrictEqual(snapshot(dir), before)
    }))

  it.effect("refuses a database whose user_version is newer than this program knows, without modifying it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(openNode(dir))
      const raw = openRaw(dbFile(dir))
      raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
      raw.close()
      const before = snapshot(dir)
      const err = yield* openFailure(dir)
      assert.include(err.message, `schema version ${SCHEMA_VERSION + 1}`)
      assert.include(err.message, "upgrade p2pchat")
      assert.deepStrictEqual(snapshot(dir), before)
    }))

  it.effect("a data dir that cannot be created (under a regular file) gives a StoreError naming the path", () =>
    Effect.gen(function*() {
      const tmp = yield* tempDir
      fs.writeFileSync(path.join(tmp, "afile"), "not a directory")
      const dataDir = path.join(tmp, "afile", "sub")
      const err = yield* openFailure(dataDir)
      assert.strictEqual(err._tag, "StoreError")
      assert.include(err.message, dataDir)
      assert.include(err.message, "--data-dir")
    }))

  it.effect("two Store instances (two connections) on one file can both write", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const a = yield* openNode(dir)
      const b = yield* openNode(dir)
      for (let i = 0; i < 10; i++) {
        yield* a.history.recordSent(msg(`a${i}`, "bob", `from a ${i}`))
        yield* b.history.recordReceived(msg(`b${i}`, "bob", `from b ${i}`))
      }
      const seenByA = yield* a.history.conversation("bob")
      const seenByB = yield* b.history.conversation("bob")
      assert.strictEqual(seenByA.length, 20)
      assert.deepStrictEqual(seenByA, seenByB)
      assert.deepStrictEqual(seenByA.slice(0, 4).map((e) => e.id), ["a0", "b0", "a1", "b1"])
    }))

  it.effect("a write waits (busy_timeout) while another process holds the write lock, then succeeds", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { history } = yield* openNode(dir)
      const holdMs = 600
      // a second p2pchat process, e.g. `send` while `start` writes
      const script = `
        ${openInChild(dbFile(dir))}
        db.exec("BEGIN IMMEDIATE")
        db.prepare("INSERT INTO messages (id, peer, direction, text, at, mode, state) VALUES ('other', 'bob', 'sent', 'x', '2024-05-01T10:00:00.000Z', 'plain', 'pending')").run()
        process.stdout.write("locked\\n")
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${holdMs})
        db.exec("COMMIT")
        db.close()
      `
      const child = spawn(process.execPath, ["-e", script], {
        cwd: process.cwd(),
        env: { ...process.env, NODE_PATH: path.join(process.cwd(), "node_modules") },
        stdio: ["ignore", "pipe", "inherit"]
      })
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      yield* Effect.promise(() =>
        new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (d: Buffer) => {
            if (d.toString().includes("locked")) resolve()
          })
          child.on("exit", () => reject(new Error("child exited before locking")))
        })
      )
      const started = Date.now()
      yield* history.recordSent(msg("mine", "bob", "waited"))
      const waited = Date.now() - started
      assert.strictEqual(yield* Effect.promise(() => exited), 0)
      assert.isAtLeast(waited, holdMs / 2)
      const ids = (yield* history.conversation("bob")).map((e) => e.id)
      assert.deepStrictEqual(ids, ["other", "mine"])
    }))
})

describe("History", () => {
  it.effect("a sent message is stored pending, then delivered, and never goes back", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      yield* history.recordSent(msg("m1", "bob", "hello"))
      const pending = yield* history.pendingFor("bob")
      assert.deepStrictEqual(pending, [{
        id: "m1",
        peer: "bob",
        direction: "sent",
        text: "hello",
        at: "2024-05-01T10:00:00.000Z",
        mode: "noise",
        state: "pending"
      }])
      assert.isTrue(yield* history.setState("m1", "bob", "delivered"))
      assert.deepStrictEqual(yield* history.pendingFor("bob"), [])
      assert.deepStrictEqual(yield* history.pendingFor(), [])
      // a repeated ack, a late classic "sent", an unknown id or another peer change nothing
      assert.isFalse(yield* history.setState("m1", "bob", "delivered"))
      assert.isFalse(yield* history.setState("m1", "bob", "sent"))
      assert.isFalse(yield* history.setState("nope", "bob", "delivered"))
      assert.isFalse(yield* history.setState("m1", "carol", "delivered"))
      const [entry] = yield* history.conversation("bob")
      assert.strictEqual(entry?.state, "delivered")
    }))

  it.effect("a copy its receiver refused is stored refused, with the code, and never moves again", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      const copy = (peer: string) => ({ ...msg("g1", peer, "hello team"), conversation: "#q3xYb2mJ0V8kPq1cR7tU9w" })
      yield* history.recordSentAll([copy("bob"), copy("carol"), copy("dave")])
      assert.deepStrictEqual(
        yield* history.setStateAll([
          { id: "g1", peer: "bob", state: "delivered" },
          { id: "g1", peer: "carol", state: "refused", refused: "not-a-member" }
        ]),
        [true, true]
      )
      assert.isTrue(yield* history.setState("g1", "dave", "refused", "left"))
      assert.deepStrictEqual(yield* history.pendingFor(), [])
      // a refusal is final: a late ack, another refusal or "sent" change nothing, nor does a refusal after a delivery
      assert.isFalse(yield* history.setState("g1", "carol", "delivered"))
      assert.isFalse(yield* history.setState("g1", "carol", "refused", "left"))
      assert.isFalse(yield* history.setState("g1", "carol", "sent"))
      assert.isFalse(yield* history.setState("g1", "bob", "refused", "left"))
      const [carol] = yield* history.conversation("carol")
      assert.deepStrictEqual(carol, {
        id: "g1", peer: "carol", direction: "sent", text: "hello team", at: "2024-05-01T10:00:00.000Z",
        mode: "noise", state: "refused", conversation: "#q3xYb2mJ0V8kPq1cR7tU9w", refused: "not-a-member"
      })
      // a delivered copy has no `refused` field at all
      assert.notProperty((yield* history.conversation("bob"))[0], "refused")
      const [line] = yield* history.inConversation("#q3xYb2mJ0V8kPq1cR7tU9w")
      assert.deepStrictEqual(line?.direction === "sent" ? line.recipients : undefined, [
        { peer: "bob", mode: "noise", state: "delivered" },
        { peer: "carol", mode: "noise", state: "refused", refused: "not-a-member" },
        { peer: "dave", mode: "noise", state: "refused", refused: "left" }
      ])
    }))

  it.effect("schema 7 makes the messages table anew: a version 6 file keeps every row, its order and its counter", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const { history } = yield* openNode(dir)
        yield* history.recordSent(msg("s1", "bob", "first"))
        yield* history.recordReceived(msg("r1", "bob", "second"))
        yield* history.recordSent({ ...msg("s2", "carol", "third"), conversation: "*all*" })
        yield* history.setState("s1", "bob", "delivered")
      }))
      // the file as version 6 left it: the messages table without 'refused'
      const raw = openRaw(dbFile(dir))
      try {
        raw.exec(`
          CREATE TABLE old_messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, peer TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')), text TEXT NOT NULL, at TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('plain', 'classic-3des', 'noise')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'sent', 'received')),
            conversation TEXT, UNIQUE (peer, direction, id));
          INSERT INTO old_messages (seq, id, peer, direction, text, at, mode, state, conversation)
            SELECT seq, id, peer, direction, text, at, mode, state, conversation FROM messages;
          DROP TABLE messages;
          ALTER TABLE old_messages RENAME TO messages;
          CREATE INDEX messages_peer_seq ON messages (peer, seq);
          CREATE INDEX messages_pending ON messages (peer, seq) WHERE direction = 'sent' AND state = 'pending';
          CREATE INDEX messages_conversation ON messages (conversation, seq) WHERE conversation IS NOT NULL;
          UPDATE sqlite_sequence SET seq = 40 WHERE name = 'messages';
          PRAGMA user_version = 6;`)
        assert.throws(() => raw.exec("UPDATE messages SET state = 'refused' WHERE id = 's2'"), /CHECK/)
      } finally {
        raw.close()
      }
      yield* Effect.scoped(Effect.gen(function*() {
        const { history, store } = yield* openNode(dir)
        assert.strictEqual(store.db.pragma("user_version", { simple: true }), SCHEMA_VERSION)
        assert.deepStrictEqual((yield* history.conversation()).map((e) => [e.id, e.state]), [["s1", "delivered"], ["r1", "received"], ["s2", "pending"]])
        assert.isTrue(yield* history.setState("s2", "carol", "refused", "not-a-member"))
        assert.strictEqual((yield* history.conversation("carol"))[0]?.refused, "not-a-member")
        yield* history.recordSent(msg("s3", "bob", "after"))
        const seqs = store.db.prepare<[], { seq: number; id: string }>("SELECT seq, id FROM messages ORDER BY seq").all()
        assert.deepStrictEqual(seqs.at(-1), { seq: 41, id: "s3" })
        const indexes = store.db.prepare<[], { name: string }>("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL ORDER BY name").all()
        assert.deepStrictEqual(indexes.map((i) => i.name), ["messages_conversation", "messages_peer_seq", "messages_pending"])
        // a code only with the state refused
        assert.throws(() => store.db.prepare("UPDATE messages SET refused = 'left' WHERE id = 's3'").run(), /CHECK/)
      }))
    }))

  it.effect("a message to a classic peer goes from pending to sent and leaves the pending list", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      yield* history.recordSent(msg("c1", "dave", "hi", undefined, "classic-3des"))
      yield* history.recordSent(msg("c2", "erin", "hi", undefined, "plain"))
      assert.deepStrictEqual((yield* history.pendingFor()).map((e) => e.id), ["c1", "c2"])
      assert.isTrue(yield* history.setState("c1", "dave", "sent"))
      assert.deepStrictEqual((yield* history.pendingFor()).map((e) => e.id), ["c2"])
      const [entry] = yield* history.conversation("dave")
      assert.strictEqual(entry?.state, "sent")
      assert.strictEqual(entry?.mode, "classic-3des")
    }))

  it.effect("a received id is stored once: the duplicate returns false and does not overwrite the text", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      assert.isTrue(yield* history.recordReceived(msg("r1", "bob", "original")))
      assert.isFalse(yield* history.recordReceived(msg("r1", "bob", "retried with other text")))
      // the same id from another peer, or one of our own sent ids, is a different message
      assert.isTrue(yield* history.recordReceived(msg("r1", "carol", "from carol")))
      yield* history.recordSent(msg("r1", "bob", "my own"))
      const bob = yield* history.conversation("bob")
      assert.deepStrictEqual(bob.map((e) => [e.id, e.direction, e.text, e.state]), [
        ["r1", "received", "original", "received"],
        ["r1", "sent", "my own", "pending"]
      ])
    }))

  it.effect("a thousand messages with the same timestamp are all kept, in the order stored", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      const at = new Date("2024-05-01T10:00:00.000Z")
      const expected: Array<string> = []
      for (let i = 0; i < 1000; i++) {
        const id = `id-${String(999 - i).padStart(4, "0")}` // ids not in sort order
        expected.push(id)
        if (i % 2 === 0) yield* history.recordReceived(msg(id, "bob", `text ${i}`, at))
        else yield* history.recordSent(msg(id, "bob", `text ${i}`, at))
      }
      const all = yield* history.conversation("bob")
      assert.strictEqual(all.length, 1000)
      assert.deepStrictEqual(all.map((e) => e.id), expected)
      assert.deepStrictEqual(all.map((e) => e.text), expected.map((_, i) => `text ${i}`))
      const last3 = yield* history.conversation("bob", { limit: 3 })
      assert.deepStrictEqual(last3.map((e) => e.id), expected.slice(-3))
    }))

  it.effect("conversation gives one peer's messages, or all peers' in storage order", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      yield* history.recordSent(msg("1", "bob", "to bob"))
      yield* history.recordReceived(msg("2", "unknown (10.0.0.7)", "from a classic sender", undefined, "classic-3des"))
      yield* history.recordReceived(msg("3", "bob", "from bob"))
      yield* history.recordSent(msg("4", "carol", "to carol", undefined, "plain"))
      assert.deepStrictEqual((yield* history.conversation("bob")).map((e) => e.text), ["to bob", "from bob"])
      assert.deepStrictEqual((yield* history.conversation("carol")).map((e) => e.text), ["to carol"])
      assert.deepStrictEqual(
        (yield* history.conversation("unknown (10.0.0.7)")).map((e) => [e.peer, e.mode]),
        [["unknown (10.0.0.7)", "classic-3des"]]
      )
      assert.deepStrictEqual((yield* history.conversation("nobody")), [])
      assert.deepStrictEqual((yield* history.conversation()).map((e) => e.id), ["1", "2", "3", "4"])
      assert.deepStrictEqual((yield* history.conversation(undefined, { limit: 2 })).map((e) => e.id), ["3", "4"])
      assert.deepStrictEqual((yield* history.conversation("bob", { limit: 0 })), [])
      // entries are exactly the `history --json` shape
      const [first] = yield* history.conversation()
      assert.deepStrictEqual(Object.keys(first ?? {}), ["id", "peer", "direction", "text", "at", "mode", "state"])
    }))

  it.effect("pendingFor lists only pending sent messages, oldest first, per peer or all", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      yield* history.recordSent(msg("b1", "bob", "1"))
      yield* history.recordSent(msg("c1", "carol", "2"))
      yield* history.recordReceived(msg("r1", "bob", "3"))
      yield* history.recordSent(msg("b2", "bob", "4"))
      yield* history.setState("b1", "bob", "delivered")
      assert.deepStrictEqual((yield* history.pendingFor("bob")).map((e) => e.id), ["b2"])
      assert.deepStrictEqual((yield* history.pendingFor()).map((e) => e.id), ["c1", "b2"])
    }))

  it.effect("an invalid date is a HistoryError, not a crash", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      const err = yield* Effect.flip(history.recordSent(msg("x", "bob", "t", new Date(Number.NaN))))
      assert.strictEqual(err._tag, "HistoryError")
      assert.include(err.message, "could not store message")
    }))

  it.effect("pins: set, get, replace (trust) and list", () =>
    Effect.gen(function*() {
      const { history } = yield* openNode(yield* tempDir)
      assert.isTrue(Option.isNone(yield* history.getPin("bob")))
      const k1 = new Uint8Array(32).fill(1)
      const k2 = new Uint8Array(32).fill(2)
      yield* history.setPin("bob", k1, new Date("2024-05-01T10:00:00.000Z"))
      const got = yield* history.getPin("bob")
      assert.isTrue(Option.isSome(got))
      assert.deepStrictEqual(Option.getOrThrow(got), k1)
      yield* history.setPin("bob", k2, new Date("2024-05-02T10:00:00.000Z"))
      assert.deepStrictEqual(Option.getOrThrow(yield* history.getPin("bob")), k2)
      yield* history.setPin("alice", k1.subarray(0, 16), new Date("2024-05-03T10:00:00.000Z"))
      const pins = yield* history.pins()
      assert.deepStrictEqual(pins.map((p) => [p.username, Array.from(p.publicKey), p.pinnedAt]), [
        ["alice", Array.from(k1.subarray(0, 16)), "2024-05-03T10:00:00.000Z"],
        ["bob", Array.from(k2), "2024-05-02T10:00:00.000Z"]
      ])
    }))
})
