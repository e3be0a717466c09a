/**
 * File transfer (protocol.md 9), end to end: in-process nodes on loopback (real TCP, real
 * SQLite and real files in temp dirs). Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Links } from "../../src/chat/Links.ts"
import { safeName } from "../../src/domain/FileName.ts"
import { CHUNK_BYTES, manifestHash } from "../../src/domain/FileWire.ts"
import { Transfers } from "../../src/transfer/Transfers.ts"
import { Trust } from "../../src/trust/Trust.ts"
import { meet, polls, startNode, tempDir, type TestNode } from "../support/node.ts"

const TUNING = { ackTimeoutMs: 2000, connectTimeoutMs: 1000, classicPauseMs: 100, retryEveryMs: 300 }
const { waitUntilEffect } = polls(20_000)

export const transfersOf = (node: TestNode) => Context.get(node.context as Context.Context<Transfers>, Transfers)

const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/** Writes `size` random bytes to `file`, a MiB at a time. */
export const randomFile = (file: string, size: number) =>
  Effect.sync(() => {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    const fd = fs.openSync(file, "w")
    for (let at = 0; at < size;) {
      const n = Math.min(1 << 20, size - at)
      fs.writeSync(fd, randomBytes(n))
      at += n
    }
    fs.closeSync(fd)
  })

/** Two nodes that know each other, with pinned keys (a first secure message each way). */
export const pair = (options: { readonly bob?: Parameters<typeof startNode>[1]["config"]; readonly bobDir?: string } = {}) =>
  Effect.gen(function*() {
    const alice = yield* startNode("alice", { tuning: TUNING })
    const bob = yield* startNode("bob", { tuning: TUNING, ...(options.bobDir === undefined ? {} : { dataDir: options.bobDir }), config: options.bob ?? {} })
    yield* meet(alice, bob)
    yield* meet(bob, alice)
    yield* alice.initiator.send("bob", "hi bob")
    yield* bob.initiator.send("alice", "hi alice")
    return { alice, bob }
  })

const stateOf = (node: TestNode, id: string) => Effect.map(Effect.orDie(transfersOf(node).get(id)), (t) => t.state)

/** The .part files under `dir`. */
const partsIn = (dir: string): Array<string> =>
  fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as Array<string>).filter((f) => f.endsWith(".part")).map((f) => path.join(dir, f)) : []

const outRow = (node: TestNode, id: string) => Effect.orDie(transfersOf(node).get(id))

/** Offers `file` from alice to bob and has bob accept it; its id. */
const offerAndAccept = (alice: TestNode, bob: TestNode, file: string) =>
  Effect.gen(function*() {
    const sent = yield* alice.initiator.sendFile("bob", [file])
    const id = sent.offers[0]!.id
    yield* waitUntilEffect("bob has the offer", Effect.map(Effect.option(transfersOf(bob).get(id)), (t) => t._tag === "Some"))
    yield* Effect.orDie(transfersOf(bob).accept(id))
    return id
  })

const done = (node: TestNode, id: string, ms = 20_000) =>
  Effect.gen(function*() {
    yield* waitUntilEffect(`${node.name}'s transfer ends`, Effect.map(stateOf(node, id), (s) => s === "done" || s === "failed"), ms)
    const t = yield* Effect.orDie(transfersOf(node).get(id))
    assert.strictEqual(t.state, "done", t.reason)
    return t
  })

/** Waits until a .part under `dir` holds at least `bytes`; its path. */
const partReaches = (dir: string, bytes: number) =>
  Effect.gen(function*() {
    yield* waitUntilEffect(`a .part of ${bytes} bytes`, Effect.sync(() => partsIn(dir).some((p) => fs.statSync(p).size >= bytes)))
    return partsIn(dir)[0]!
  })

describe("files over real sockets and storage", () => {
  it.live("a file arrives with its hash; the sender's row says done", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const src = yield* tempDir("src")
      const file = path.join(src, "report.bin")
      yield* randomFile(file, 5 * CHUNK_BYTES + 123)
      const sent = yield* alice.initiator.sendFile("bob", [file])
      assert.strictEqual(sent.offers.length, 1)
      assert.deepStrictEqual(sent.recipients.map((r) => [r.peer, r.state]), [["bob", "delivered"]])
      const id = sent.offers[0]!.id
      yield* waitUntilEffect("bob has the offer", Effect.map(Effect.option(transfersOf(bob).get(id)), (t) => t._tag === "Some"))
      yield* Effect.orDie(transfersOf(bob).accept(id))
      yield* waitUntilEffect("bob received it", Effect.map(stateOf(bob, id), (s) => s === "done" || s === "failed"))
      const t = yield* Effect.orDie(transfersOf(bob).get(id))
      assert.strictEqual(t.state, "done", t.reason)
      assert.strictEqual(t.path, path.join(bob.dataDir, "downloads", "report.bin"))
      assert.strictEqual(sha(t.path!), sha(file))
      yield* waitUntilEffect("alice's side done", Effect.map(stateOf(alice, id), (s) => s === "done"))
    }), 60_000)

  it.live("a 200 MB file arrives with its hash", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const src = yield* tempDir("src")
      const file = path.join(src, "big.bin")
      yield* randomFile(file, 200 * 1024 * 1024)
      const id = yield* offerAndAccept(alice, bob, file)
      const t = yield* done(bob, id, 40_000)
      assert.strictEqual(t.bytes, 200 * 1024 * 1024)
      assert.strictEqual(sha(t.path!), t.sha256)
      assert.strictEqual(t.sha256, sha(file))
      assert.deepStrictEqual(partsIn(path.join(bob.dataDir, "downloads")), [])
    }), 60_000)

  it.live("a folder of 1,000 small files arrives with every hash and relative path", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const src = yield* tempDir("src")
      const root = path.join(src, "photos")
      const files: Array<string> = []
      for (let i = 0; i < 1000; i++) files.push(`d${i % 10}/sub${i % 3}/f${i}.dat`)
      for (const [i, f] of files.entries()) yield* randomFile(path.join(root, f), 100 + (i * 37) % 3000)
      fs.symlinkSync("/etc/passwd", path.join(root, "link")) // never followed, never sent
      const id = yield* offerAndAccept(alice, bob, root)
      const t = yield* done(bob, id, 40_000)
      assert.strictEqual(t.count, 1000)
      assert.strictEqual(t.path, path.join(bob.dataDir, "downloads", "photos"))
      for (const f of files) assert.strictEqual(sha(path.join(t.path!, f)), sha(path.join(root, f)), f)
      assert.isFalse(fs.existsSync(path.join(t.path!, "link")))
      assert.deepStrictEqual(partsIn(t.path!), [])
    }), 60_000)

  it.live("resume after the receiver stops mid-transfer, with a chunk of its .part damaged: only that chunk and the rest are sent again", () =>
    Effect.gen(function*() {
      const bobDir = yield* tempDir("bob")
      const { alice, bob } = yield* pair({ bobDir })
      const src = yield* tempDir("src")
      const file = path.join(src, "movie.bin")
      const size = 64 * 1024 * 1024
      yield* randomFile(file, size)
      const id = yield* offerAndAccept(alice, bob, file)
      const part = yield* partReaches(path.join(bobDir, "downloads"), 16 * 1024 * 1024)
      yield* bob.close
      yield* waitUntilEffect("alice's side paused", Effect.map(outRow(alice, id), (t) => t.state === "paused"))
      const servedAtCut = (yield* outRow(alice, id)).bytes
      const had = fs.statSync(part).size
      // a byte flipped inside the third chunk
      const fd = fs.openSync(part, "r+")
      const b = Buffer.alloc(1)
      fs.readSync(fd, b, 0, 1, 2 * CHUNK_BYTES + 5)
      b[0] = b[0]! ^ 0xff
      fs.writeSync(fd, b, 0, 1, 2 * CHUNK_BYTES + 5)
      fs.closeSync(fd)
      const back = yield* startNode("bob", { tuning: TUNING, dataDir: bobDir })
      yield* meet(back, alice)
      yield* meet(alice, back)
      const t = yield* done(back, id, 30_000)
      assert.strictEqual(sha(t.path!), sha(file))
      yield* waitUntilEffect("alice's side done", Effect.map(outRow(alice, id), (t) => t.state === "done"))
      const again = (yield* outRow(alice, id)).bytes - servedAtCut
      // what bob had is not sent again: the damaged chunk, and at most the chunk cut short
      assert.isAtMost(again, size - had + 2 * CHUNK_BYTES)
      assert.isAtLeast(again, size - had + CHUNK_BYTES - 1)
    }), 60_000)

  it.live("resume after the sender stops mid-transfer: received bytes are not sent again", () =>
    Effect.gen(function*() {
      const aliceDir = yield* tempDir("alice")
      const alice = yield* startNode("alice", { tuning: TUNING, dataDir: aliceDir })
      const bob = yield* startNode("bob", { tuning: TUNING })
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      yield* alice.initiator.send("bob", "hi")
      const src = yield* tempDir("src")
      const file = path.join(src, "movie.bin")
      const size = 64 * 1024 * 1024
      yield* randomFile(file, size)
      const id = yield* offerAndAccept(alice, bob, file)
      const part = yield* partReaches(path.join(bob.dataDir, "downloads"), 16 * 1024 * 1024)
      yield* alice.close
      yield* waitUntilEffect("bob's side paused", Effect.map(stateOf(bob, id), (s) => s === "paused"))
      const had = fs.statSync(part).size
      const back = yield* startNode("alice", { tuning: TUNING, dataDir: aliceDir })
      const servedAtCut = (yield* outRow(back, id)).bytes
      yield* meet(back, bob)
      yield* meet(bob, back)
      const t = yield* done(bob, id, 30_000)
      assert.strictEqual(sha(t.path!), sha(file))
      yield* waitUntilEffect("alice's side done", Effect.map(outRow(back, id), (t) => t.state === "done"))
      const again = (yield* outRow(back, id)).bytes - servedAtCut
      assert.isAtMost(again, size - had + CHUNK_BYTES)
    }), 60_000)

  it.live("hostile names land safely renamed inside downloads: a file's name and a folder's paths", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const downloads = path.join(bob.dataDir, "downloads")
      const src = yield* tempDir("src")
      const file = path.join(src, "plain.txt")
      fs.writeFileSync(file, "hello")
      const bobPeer = Option.getOrThrow(yield* alice.registry.lookup("bob"))
      const links = Context.get(alice.context, Links)
      const hostile = ["../../etc/passwd", "C:\\x", "con", "x".repeat(300) + ".txt", "a\u0001b\nc\u202e.txt", "..", ""]
      const ids: Array<string> = []
      for (const name of hostile) {
        const [offer] = yield* Effect.orDie(transfersOf(alice).prepare([file], ["bob"]))
        alice.store.db.prepare("UPDATE transfers SET name = @name WHERE id = @id").run({ name, id: offer!.id })
        yield* links.deliver(bobPeer, "noise", { id: offer!.id, text: "a file", sentAt: new Date().toISOString(), file: { ...offer!, name } })
        ids.push(offer!.id)
      }
      // a folder whose relative paths climb, are absolute or hold a drive
      const folder = path.join(src, "evil")
      for (const f of ["a.txt", "b.txt", "c.txt"]) yield* randomFile(path.join(folder, f), 10)
      const [fo] = yield* Effect.orDie(transfersOf(alice).prepare([folder], ["bob"]))
      const seq = (alice.store.db.prepare("SELECT seq FROM transfers WHERE id = @id").get({ id: fo!.id }) as { seq: number }).seq
      const paths = ["../../../escaped.txt", "/etc/cron.d/x", "C:\\Windows\\y"]
      paths.forEach((p, idx) => alice.store.db.prepare("UPDATE transfer_items SET path = @p WHERE transfer = @seq AND idx = @idx").run({ p, seq, idx }))
      const items = alice.store.db.prepare("SELECT path, size, sha256 FROM transfer_items WHERE transfer = @seq ORDER BY idx").all({ seq }) as Array<{ path: string; size: number; sha256: string }>
      const sha256 = manifestHash(items)
      alice.store.db.prepare("UPDATE transfers SET sha256 = @sha256 WHERE seq = @seq").run({ sha256, seq })
      yield* links.deliver(bobPeer, "noise", { id: fo!.id, text: "a folder", sentAt: new Date().toISOString(), file: { ...fo!, sha256 } })
      for (const id of [...ids, fo!.id]) {
        yield* waitUntilEffect("bob has the offer", Effect.map(Effect.option(transfersOf(bob).get(id)), (t) => t._tag === "Some"))
        yield* Effect.orDie(transfersOf(bob).accept(id))
      }
      const landed: Array<string> = []
      for (const id of ids) landed.push(path.basename((yield* done(bob, id)).path!))
      for (const [i, name] of hostile.entries()) {
        assert.strictEqual(landed[i]!.replace(/ \(\d+\)/, ""), safeName(name))
        assert.isTrue(fs.existsSync(path.join(downloads, landed[i]!)))
      }
      assert.sameMembers(landed.slice(0, 2), [".._.._etc_passwd", "C__x"])
      assert.include(landed, "_con")
      assert.isAtMost(Buffer.byteLength(landed[3]!), 255)
      assert.match(landed[3]!, /\.txt$/)
      assert.notMatch(landed.join(""), /[\u0000-\u001f\u202e]/)
      const f = yield* done(bob, fo!.id)
      const inside = (fs.readdirSync(f.path!, { recursive: true }) as Array<string>).filter((p) => fs.statSync(path.join(f.path!, p)).isFile())
      assert.sameMembers(inside, ["escaped.txt", path.join("etc", "cron.d", "x"), "C__Windows_y"])
      assert.isFalse(fs.existsSync(path.join(bob.dataDir, "escaped.txt")))
      // everything bob received is under downloads
      for (const n of fs.readdirSync(bob.dataDir)) assert.notInclude(["escaped.txt", "passwd", "x", "y"], n)
    }), 60_000)

  it.live("a puller that is not a recipient is refused; an offer is taken by itself only from a listed sender whose key was verified", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING, config: { acceptFilesFrom: ["alice"] } })
      const carol = yield* startNode("carol", { tuning: TUNING, config: { acceptFilesFrom: ["alice"] } })
      for (const [a, b] of [[alice, bob], [alice, carol], [carol, bob]] as const) {
        yield* meet(a, b)
        yield* meet(b, a)
        yield* a.initiator.send(b.name, "hi")
      }
      const src = yield* tempDir("src")
      const file = path.join(src, "secret.txt")
      fs.writeFileSync(file, "for bob only")
      // to bob, who lists alice but has not verified her key: it waits for accept
      const early = path.join(src, "early.txt")
      fs.writeFileSync(early, "before bob compared fingerprints")
      const waiting = (yield* alice.initiator.sendFile("bob", [early])).offers[0]!.id
      yield* waitUntilEffect("bob has the early offer", Effect.map(Effect.option(transfersOf(bob).get(waiting)), (t) => t._tag === "Some"))
      yield* Effect.sleep("500 millis")
      assert.strictEqual(yield* stateOf(bob, waiting), "offered")
      // bob verifies alice's key: her next offer is taken at once
      yield* Effect.orDie(Context.get(bob.context, Trust).trustPeer("alice", alice.fingerprint))
      const sent = yield* alice.initiator.sendFile("bob", [file])
      const id = sent.offers[0]!.id
      const t = yield* done(bob, id)
      assert.strictEqual(yield* stateOf(bob, waiting), "offered")
      assert.strictEqual(fs.readFileSync(t.path!, "utf8"), "for bob only")
      // carol is told of bob's offer (a forged copy of the msg): she is refused by alice's server
      const carolPeer = Option.getOrThrow(yield* alice.registry.lookup("carol"))
      yield* Context.get(alice.context, Links).deliver(carolPeer, "noise", {
        id, text: "a file", sentAt: new Date().toISOString(), file: sent.offers[0]!
      })
      // carol lists alice but has not verified her: she accepts it herself
      yield* waitUntilEffect("carol has the forged offer", Effect.map(Effect.option(transfersOf(carol).get(id)), (t) => t._tag === "Some"))
      yield* Effect.orDie(transfersOf(carol).accept(id))
      yield* waitUntilEffect("carol's transfer fails", Effect.map(Effect.option(transfersOf(carol).get(id)), (t) => t._tag === "Some" && t.value.state === "failed"))
      const refused = yield* Effect.orDie(transfersOf(carol).get(id))
      assert.match(refused.reason!, /not for carol/)
      assert.deepStrictEqual(fs.existsSync(path.join(carol.dataDir, "downloads")) ? fs.readdirSync(path.join(carol.dataDir, "downloads")) : [], [])
      // carol, whom bob does not list, offers bob a file: it waits for bob's accept
      const other = path.join(src, "from-carol.txt")
      fs.writeFileSync(other, "hello bob")
      const fromCarol = (yield* carol.initiator.sendFile("bob", [other])).offers[0]!.id
      yield* waitUntilEffect("bob has carol's offer", Effect.map(Effect.option(transfersOf(bob).get(fromCarol)), (t) => t._tag === "Some"))
      yield* Effect.sleep("500 millis")
      assert.strictEqual(yield* stateOf(bob, fromCarol), "offered")
      // bob declines it: carol is told
      yield* Effect.orDie(transfersOf(bob).decline(fromCarol))
      yield* waitUntilEffect("carol's side declined", Effect.map(stateOf(carol, fromCarol), (s) => s === "declined"))
    }), 60_000)
})
